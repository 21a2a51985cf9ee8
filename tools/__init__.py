"""tfvae's command-line programs (absl flag scripts)."""
from tools import quiet_start  # pylint: disable=unused-import
