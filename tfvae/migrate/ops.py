"""What the op types of a TF1 graph mean to the migration, and which are unsafe.

A `.meta` is a program. Finding a generator in it means telling variables,
weight ops, random draws and output heads apart by op type; running part of
it safely means refusing ops that touch files or run Python.
"""

# Ops that touch the file system, the network or run Python: a `.meta` is a
# program, and these must not run while decoding.
UNSAFE_OP_TYPES = frozenset({
    "WriteFile", "ReadFile", "MatchingFiles", "PyFunc", "PyFuncStateless",
    "EagerPyFunc", "Save", "SaveV2", "SaveSlices", "Restore", "RestoreV2",
    "RestoreSlice", "MergeV2Checkpoints", "ShardedFilename", "ShardedFilespec",
    "WholeFileReader", "WholeFileReaderV2", "TextLineReader",
    "TextLineReaderV2", "TFRecordReader", "TFRecordReaderV2",
    "FixedLengthRecordReader", "FixedLengthRecordReaderV2",
    "TextLineDataset", "TFRecordDataset", "FixedLengthRecordDataset",
    "ImmutableConst", "LoadAndRemapMatrix", "CreateSummaryFileWriter",
    "CreateSummaryDbWriter", "WriteSummary", "WriteScalarSummary",
    "WriteImageSummary", "WriteHistogramSummary", "WriteAudioSummary",
    "WriteGraphSummary", "WriteRawProtoSummary", "DebugIdentity",
    "DebugIdentityV2", "DebugNanCount", "DebugNumericSummary",
    "DebugNumericSummaryV2", "Fact", "Print",
})
# The Saver's own subgraph saves and restores files; it never runs when
# decoding, so it is reported but expected.
SAVER_SCOPE = "save/"

VARIABLE_OP_TYPES = frozenset({"VariableV2", "Variable", "VarHandleOp"})
WEIGHT_OP_TYPES = {  # op type -> indices of the inputs that carry activations
    "MatMul": (0, 1), "BatchMatMul": (0, 1), "BatchMatMulV2": (0, 1),
    "BatchMatMulV3": (0, 1), "Conv2D": (0,), "Conv3D": (0,),
    "DepthwiseConv2dNative": (0,), "Conv2DBackpropInput": (2,),
    "Conv3DBackpropInputV2": (2,), "Einsum": (0, 1),
}
RANDOM_OP_TYPES = frozenset({
    "RandomStandardNormal", "RandomUniform", "RandomUniformInt",
    "TruncatedNormal", "ParameterizedTruncatedNormal", "RandomGamma",
    "RandomPoisson", "RandomPoissonV2", "Multinomial", "RandomShuffle",
    "StatelessRandomNormal", "StatelessRandomNormalV2",
    "StatelessRandomUniform", "StatelessRandomUniformV2",
    "StatelessTruncatedNormal", "StatelessTruncatedNormalV2",
})
# Ops that may follow the decoder's last weight op and still be "the output":
# bias additions and activations.
HEAD_OP_TYPES = frozenset({
    "BiasAdd", "Add", "AddV2", "Sigmoid", "Tanh", "Relu", "Relu6", "Elu",
    "Selu", "Softplus", "Softmax", "Identity",
})
# The head ops that end a decoder: after them only identities are followed.
ACTIVATION_OP_TYPES = frozenset({"Sigmoid", "Tanh", "Softmax"})


# Name scopes of the training machinery: gradients, the Saver, and the
# optimizers' slot updates and bookkeeping.
TRAINING_SCOPES = ("gradients", SAVER_SCOPE)
OPTIMIZER_OP_PREFIXES = ("Apply", "ResourceApply", "SparseApply",
                         "ResourceSparseApply")


def is_training_machinery(op):
  """Whether `op` belongs to the gradients, an optimizer or the Saver."""
  if op.name.startswith(TRAINING_SCOPES):
    return True
  return op.type.startswith(OPTIMIZER_OP_PREFIXES)


def is_dropout(op):
  """Whether `op` lies in a dropout's name scope (`dropout/`, `dropout_1/`)."""
  return any(part.startswith("dropout") for part in op.name.split("/")[:-1])


def is_unsafe(op):
  """Whether running `op` (a `tf.Operation`) touches files or runs Python.

  `PrintV2` is unsafe only when it prints to a file rather than a stream.
  """
  if op.type in UNSAFE_OP_TYPES:
    return True
  if op.type == "PrintV2":
    try:
      return op.get_attr("output_stream").startswith("file://")
    except ValueError:
      return False
  return False
