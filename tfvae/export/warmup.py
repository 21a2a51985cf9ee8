"""TF Serving warmup requests: `assets.extra/tf_serving_warmup_requests`.

TF Serving replays the records of this file (a TFRecord file of
`tensorflow.serving.PredictionLog` protos) when it loads a model version, so
that the first real request does not pay for tracing and graph optimisation.
Each record holds one `PredictRequest`: a signature name and its named input
tensors.

The records are built with the `tensorflow-serving-api` protos when that
package (the optional extra `tfvae[serving]`) is installed. Without it they
are encoded here by hand: the messages involved are small, their field
numbers are fixed by TF Serving's .proto files
(tensorflow_serving/apis/{prediction_log,predict,model}.proto), and the
tensors inside are TensorFlow's own `TensorProto`s. Both paths give the same
messages (the tests check one against the other).
"""
import os

import tensorflow as tf
from tensorflow.core.framework import tensor_pb2

from tfvae import errors

ASSETS_EXTRA = "assets.extra"
WARMUP_FILE = "tf_serving_warmup_requests"

try:
  from tensorflow_serving.apis import predict_pb2  # pylint: disable=g-import-not-at-top
  from tensorflow_serving.apis import prediction_log_pb2  # pylint: disable=g-import-not-at-top
except ImportError:  # The optional extra is not installed.
  predict_pb2 = None
  prediction_log_pb2 = None

# Field numbers from TF Serving's .proto files.
_PREDICTION_LOG_PREDICT_LOG = 6     # PredictionLog.predict_log
_PREDICT_LOG_REQUEST = 1            # PredictLog.request
_PREDICT_REQUEST_MODEL_SPEC = 1     # PredictRequest.model_spec
_PREDICT_REQUEST_INPUTS = 2         # PredictRequest.inputs (map entries)
_MODEL_SPEC_NAME = 1                # ModelSpec.name
_MODEL_SPEC_SIGNATURE_NAME = 3      # ModelSpec.signature_name
_MAP_KEY = 1
_MAP_VALUE = 2
_VARINT = 0
_FIXED64 = 1
_LENGTH_DELIMITED = 2
_FIXED32 = 5


def path(saved_model_dir):
  """The warmup file of the SavedModel in `saved_model_dir`."""
  return os.path.join(saved_model_dir, ASSETS_EXTRA, WARMUP_FILE)


def have_serving_api():
  """Whether the `tensorflow-serving-api` protos are importable."""
  return prediction_log_pb2 is not None


def _varint(value):
  out = bytearray()
  while True:
    byte = value & 0x7F
    value >>= 7
    if value:
      out.append(byte | 0x80)
    else:
      out.append(byte)
      return bytes(out)


def _field(number, payload):
  """A length-delimited field: key, length, payload."""
  return (_varint(number << 3 | _LENGTH_DELIMITED) + _varint(len(payload))
          + payload)


def _encode_by_hand(signature_name, inputs, model_name):
  model_spec = (_field(_MODEL_SPEC_NAME, model_name.encode())
                + _field(_MODEL_SPEC_SIGNATURE_NAME, signature_name.encode()))
  request = _field(_PREDICT_REQUEST_MODEL_SPEC, model_spec)
  for key, value in inputs.items():
    entry = (_field(_MAP_KEY, key.encode())
             + _field(_MAP_VALUE,
                      tf.make_tensor_proto(value).SerializeToString()))
    request += _field(_PREDICT_REQUEST_INPUTS, entry)
  return _field(_PREDICTION_LOG_PREDICT_LOG,
                _field(_PREDICT_LOG_REQUEST, request))


def encode(signature_name, inputs, model_name="model", by_hand=None):
  """Serialises one PredictionLog record holding a PredictRequest.

  Args:
    signature_name: The signature the request calls.
    inputs: dict of input name -> numpy array (its dtype is kept).
    model_name: `ModelSpec.name` (TF Serving's warmup ignores it).
    by_hand: Force (True) or forbid (False) the hand encoder; None uses the
      `tensorflow-serving-api` protos when installed.

  Returns:
    The serialised `PredictionLog` (bytes).
  """
  if by_hand is None:
    by_hand = not have_serving_api()
  if by_hand:
    return _encode_by_hand(signature_name, inputs, model_name)
  request = predict_pb2.PredictRequest()
  request.model_spec.name = model_name
  request.model_spec.signature_name = signature_name
  for key, value in inputs.items():
    request.inputs[key].CopyFrom(tf.make_tensor_proto(value))
  log = prediction_log_pb2.PredictionLog(
      predict_log=prediction_log_pb2.PredictLog(request=request))
  return log.SerializeToString()


def _read_varint(buffer, pos):
  result = shift = 0
  while True:
    if pos >= len(buffer):
      raise ValueError("truncated varint")
    byte = buffer[pos]
    pos += 1
    result |= (byte & 0x7F) << shift
    shift += 7
    if not byte & 0x80:
      return result, pos


def _fields(buffer):
  """Yields (number, payload) of a message's length-delimited fields."""
  pos = 0
  while pos < len(buffer):
    key, pos = _read_varint(buffer, pos)
    number, wire_type = key >> 3, key & 7
    if wire_type == _VARINT:
      _, pos = _read_varint(buffer, pos)
    elif wire_type == _FIXED64:
      pos += 8
    elif wire_type == _FIXED32:
      pos += 4
    elif wire_type == _LENGTH_DELIMITED:
      length, pos = _read_varint(buffer, pos)
      if pos + length > len(buffer):
        raise ValueError("truncated field")
      yield number, buffer[pos:pos + length]
      pos += length
    else:
      raise ValueError(f"unsupported wire type {wire_type}")


def _decode_by_hand(record):
  signature_name, inputs = "", {}
  for number, log in _fields(record):
    if number != _PREDICTION_LOG_PREDICT_LOG:
      continue
    for number, request in _fields(log):
      if number != _PREDICT_LOG_REQUEST:
        continue
      for number, payload in _fields(request):
        if number == _PREDICT_REQUEST_MODEL_SPEC:
          for n, value in _fields(payload):
            if n == _MODEL_SPEC_SIGNATURE_NAME:
              signature_name = bytes(value).decode()
        elif number == _PREDICT_REQUEST_INPUTS:
          entry = dict(_fields(payload))
          tensor = tf.make_ndarray(tensor_pb2.TensorProto.FromString(
              bytes(entry[_MAP_VALUE])))
          inputs[bytes(entry[_MAP_KEY]).decode()] = tensor
  return signature_name, inputs


def decode(record, by_hand=None):
  """Parses a PredictionLog record back into (signature_name, inputs).

  Args:
    record: bytes of one `PredictionLog` holding a `PredictLog`.
    by_hand: As in `encode`.

  Returns:
    (signature_name, dict of input name -> numpy array). The signature name
    is "" where the request leaves it out (TF Serving's serving_default).
  """
  if by_hand is None:
    by_hand = not have_serving_api()
  if by_hand:
    return _decode_by_hand(record)
  log = prediction_log_pb2.PredictionLog.FromString(record)
  request = log.predict_log.request
  return request.model_spec.signature_name, {
      key: tf.make_ndarray(value) for key, value in request.inputs.items()}


def write(saved_model_dir, requests, model_name="model"):
  """Writes the warmup file of a SavedModel.

  Args:
    saved_model_dir: The SavedModel directory (the version directory).
    requests: Sequence of (signature_name, {input name: numpy array}).
    model_name: `ModelSpec.name` of every request.

  Returns:
    The path written.
  """
  target = path(saved_model_dir)
  os.makedirs(os.path.dirname(target), exist_ok=True)
  with tf.io.TFRecordWriter(target) as writer:
    for signature_name, inputs in requests:
      writer.write(encode(signature_name, inputs, model_name))
  return target


def read(saved_model_dir, by_hand=None):
  """Reads the warmup file back: a list of (signature_name, inputs).

  Raises:
    errors.TfvaeError: If the file is missing or a record is not a
      PredictionLog holding a PredictRequest.
  """
  source = path(saved_model_dir)
  if not os.path.isfile(source):
    raise errors.TfvaeError(f"{source}: no such warmup file")
  requests = []
  try:
    for record in tf.data.TFRecordDataset(source).as_numpy_iterator():
      requests.append(decode(record, by_hand))
  except (tf.errors.OpError, ValueError) as e:
    raise errors.TfvaeError(f"{source}: not a file of PredictionLog records: "
                            f"{str(e).splitlines()[0]}") from None
  return requests
