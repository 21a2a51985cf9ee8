"""What the op types of a TF1 graph mean to the migration, and which are unsafe.

A `.meta` is a program. Finding a generator in it means telling variables,
weight ops, random draws and output heads apart by op type; running part of
it safely means refusing ops that touch files or run Python.
"""
import dataclasses

from absl import logging

from tfvae import errors

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
    # Datasets that read or write files, and the readers of any path.
    "DatasetToTFRecord", "TFRecordDatasetV2", "FixedLengthRecordDatasetV2",
    "CSVDataset", "CSVDatasetV2", "ExperimentalCSVDataset", "SaveDataset",
    "SaveDatasetV2", "LoadDataset", "SnapshotDataset", "SnapshotDatasetV2",
    "ExperimentalSqlDataset", "SqlDataset", "WriteSummary",
    "DecodeProto", "EncodeProto", "EagerPyFunc", "MatchingFilesDataset",
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


# What a generator's decode path may run: arithmetic, activations, array and
# shape manipulation, reading variables, and the control flow that selects
# among them (whose branches and bodies are checked in turn). Anything else
# is refused unless the user says --allow_unsafe_ops: an allow list, because
# a deny list misses every file- or network-touching op nobody thought of.
ALLOWED_OP_TYPES = frozenset({
    # Inputs, constants, variables.
    "Const", "Placeholder", "PlaceholderWithDefault", "Identity", "IdentityN",
    "VariableV2", "Variable", "VarHandleOp", "ReadVariableOp", "NoOp",
    "StopGradient", "PreventGradient", "Snapshot", "CheckNumerics",
    "EnsureShape", "Assert",
    # Arithmetic.
    "Add", "AddV2", "AddN", "BiasAdd", "BiasAddV1", "Sub", "Mul", "MulNoNan",
    "Div", "RealDiv", "DivNoNan", "FloorDiv", "FloorMod", "Mod",
    "TruncateDiv", "Neg", "Abs", "Sign", "Reciprocal", "Inv", "Square",
    "SquaredDifference", "Sqrt", "Rsqrt", "Pow", "Exp", "Expm1", "Log",
    "Log1p", "Maximum", "Minimum", "ClipByValue", "Floor", "Ceil", "Round",
    "Rint", "Erf", "Erfc", "Lgamma", "Digamma", "Sin", "Cos", "Tan", "Atan",
    "Atan2", "Sinh", "Cosh", "Xlogy", "Xdivy", "IsNan", "IsFinite", "IsInf",
    "MatMul", "BatchMatMul", "BatchMatMulV2", "BatchMatMulV3", "Einsum",
    "Sum", "Mean", "Prod", "Max", "Min", "ArgMax", "ArgMin", "Cumsum",
    "Cumprod", "All", "Any",
    # Comparisons and selection.
    "Greater", "GreaterEqual", "Less", "LessEqual", "Equal", "NotEqual",
    "LogicalAnd", "LogicalOr", "LogicalNot", "Select", "SelectV2", "Where",
    # Activations and nn.
    "Sigmoid", "Tanh", "Relu", "Relu6", "Elu", "Selu", "Softplus",
    "Softsign", "LeakyRelu", "Gelu", "Softmax", "LogSoftmax",
    "Conv2D", "Conv2DBackpropInput", "Conv3D", "Conv3DBackpropInputV2",
    "DepthwiseConv2dNative", "DepthwiseConv2dNativeBackpropInput",
    "MaxPool", "MaxPoolV2", "AvgPool", "FusedBatchNorm", "FusedBatchNormV2",
    "FusedBatchNormV3", "ResizeBilinear", "ResizeNearestNeighbor",
    "ResizeBicubic", "LRN",
    # Arrays and shapes.
    "Reshape", "Shape", "ShapeN", "Size", "Rank", "Pack", "Unpack",
    "ConcatV2", "Concat", "Split", "SplitV", "Slice", "StridedSlice",
    "Squeeze", "ExpandDims", "Transpose", "Tile", "Fill", "ZerosLike",
    "OnesLike", "Cast", "Bitcast", "Range", "BroadcastTo", "BroadcastArgs",
    "BroadcastGradientArgs", "GatherV2", "Gather", "GatherNd", "OneHot",
    "Pad", "PadV2", "MirrorPad", "ReverseV2", "LinSpace",
    # Random draws (dropout's, which the fed keep probability makes inert):
    # they read no file.
    "RandomStandardNormal", "RandomUniform", "RandomUniformInt",
    "TruncatedNormal", "StatelessRandomNormal", "StatelessRandomNormalV2",
    "StatelessRandomUniform", "StatelessRandomUniformV2",
    "StatelessRandomGetKeyCounter", "StatelessRandomGetKeyCounterAlg",
    "StatelessRandomGetAlg",
    # Control flow, v1 and v2; function bodies and branches are walked.
    "Switch", "Merge", "Enter", "Exit", "NextIteration", "LoopCond",
    "If", "StatelessIf", "While", "StatelessWhile", "Case", "StatelessCase",
    "PartitionedCall", "StatefulPartitionedCall",
    # v2 control flow keeps a branch's intermediates for its gradient in
    # optionals: values in memory, nothing else.
    "OptionalNone", "OptionalFromValue", "OptionalGetValue",
    "OptionalHasValue",
})
# Attributes of an op that name functions it runs (a call's function, a
# conditional's branches, a loop's condition and body).
FUNCTION_ATTRS = ("f", "then_branch", "else_branch", "cond", "body",
                  "branches")


def _text(value):
  if isinstance(value, bytes):
    return value.decode("utf-8", "replace")
  return str(value)


def prints_to_file(op_type, attrs):
  """Whether a `PrintV2` op (its type and attr map) prints to a file."""
  if op_type != "PrintV2" or "output_stream" not in attrs:
    return False
  return _text(attrs["output_stream"].s).startswith("file://")


@dataclasses.dataclass(frozen=True)
class Finding:
  """An op that a check refused: where it is and what it is.

  Attributes:
    name: The op's name; an op inside a function reads
      "CALLER/FUNCTION/NODE", so the user can find it.
    type: Its op type.
  """
  name: str
  type: str


def function_library(graph):
  """{function name: FunctionDef} of a `tf.Graph`'s function library."""
  return {f.signature.name: f for f in graph.as_graph_def().library.function}


def _called_functions(op_type, attrs, library):
  """Names of the library functions an op runs: a function called by its
  op type, or named by one of `FUNCTION_ATTRS`."""
  names = [op_type] if op_type in library else []
  for key in FUNCTION_ATTRS:
    if key not in attrs:
      continue
    value = attrs[key]
    if value.HasField("func"):
      names.append(value.func.name)
    names.extend(f.name for f in value.list.func)
  return names


def find_ops(operations, library, refuse):
  """The ops among `operations`, and inside every function they run, that
  `refuse(op_type, attrs)` names.

  Function bodies, conditional branches and loop bodies are walked to any
  depth (each function once), because a graph can hide a `WriteFile` in a
  `tf.function` or a `tf.cond` branch as easily as at its top level.

  Args:
    operations: `tf.Operation`s of a graph.
    library: `function_library` of that graph.
    refuse: fn(op_type: str, attrs: map of AttrValue) -> bool.

  Returns:
    The refused ops as `Finding`s, sorted by name.
  """
  found = []
  walked = set()
  todo = [(op.name, op.type, op.node_def.attr) for op in operations]
  while todo:
    name, op_type, attrs = todo.pop()
    if refuse(op_type, attrs):
      found.append(Finding(name, op_type))
    for function in _called_functions(op_type, attrs, library):
      if function in walked:
        continue
      walked.add(function)
      todo.extend((f"{name}/{function}/{node.name}", node.op, node.attr)
                  for node in library[function].node_def)
  return sorted(found, key=lambda f: f.name)


def is_unsafe_type(op_type, attrs):
  """Deny list: whether an op of this type touches files or runs Python."""
  return op_type in UNSAFE_OP_TYPES or prints_to_file(op_type, attrs)


def is_disallowed_type(op_type, attrs, library):
  """Allow list: whether a generator may not run an op of this type."""
  if prints_to_file(op_type, attrs):
    return True
  return op_type not in ALLOWED_OP_TYPES and op_type not in library


def refuse_unless_allowed(found, allow_unsafe_ops, what, refusing, warning):
  """Refuses to run a graph holding the ops `found`, or warns and goes on.

  The one refusal of `tfvae-migrate` and `tfvae-build-generator`:
  "WHAT: OP (TYPE), ...; REFUSING (pass --allow_unsafe_ops if you trust this
  graph)".

  Args:
    found: The `tf.Operation`s outside the allow list (or unsafe); none:
      nothing happens.
    allow_unsafe_ops: Whether the user trusts the graph: log `warning`
      instead of refusing.
    what: The error's start, naming the graph and the part that would run.
    refusing: What is refused, after the listed ops ("refusing").
    warning: The warning's start, before the listed ops.

  Raises:
    errors.TfvaeError: If `found` is not empty and not `allow_unsafe_ops`.
  """
  if not found:
    return
  listed = ", ".join(f"{op.name} ({op.type})" for op in found)
  if not allow_unsafe_ops:
    raise errors.TfvaeError(
        f"{what}: {listed}; {refusing} (pass --allow_unsafe_ops if you trust "
        "this graph)")
  logging.warning("%s: %s", warning, listed)
