"""The latent space explorer: a trained model served to a page in the browser.

  explorer   `Explorer`: the model, the data layer (posterior means of a split)
             and the plane shown; every request's checks; pictures as PNGs
  server     the HTTP server (standard library only) and its routes
  page/      the page (plain HTML, CSS and JavaScript, no build step)

`tfvae-explore --model=RUN_DIR_OR_EXPORT` (tools/explore.py) starts it.
"""
