"""Small hostile or unusual .tflite files for the hostile-input tests, made here with TensorFlow's
converter (no file is shipped): an endless WHILE loop, a 2-D input, a 1-channel image, a dynamic
shape, and flatbuffer edits of a valid model (negative dimension, no input, input out of range)."""
from __future__ import annotations

from pathlib import Path


def _tf():
    from srdeploy.runtime import quiet_tensorflow

    quiet_tensorflow()
    import tensorflow as tf

    return tf


def _convert(fn, path: Path) -> Path:
    tf = _tf()
    conv = tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()], fn)
    path.write_bytes(conv.convert())
    return path


def endless_loop(path: Path) -> Path:
    """1x8x8x3 -> 1x8x8x3 whose WHILE loop never ends for inputs >= 0 (inf + 1 stays > -1)."""
    tf = _tf()

    @tf.function(input_signature=[tf.TensorSpec([1, 8, 8, 3], tf.float32)])
    def f(x):
        return tf.while_loop(lambda v: tf.reduce_sum(v) > -1.0, lambda v: [v + 1.0], [x])[0]

    return _convert(f, path)


def two_d(path: Path) -> Path:
    """A valid model with a 2-D input (1x8 -> 1x8)."""
    tf = _tf()

    @tf.function(input_signature=[tf.TensorSpec([1, 8], tf.float32)])
    def f(x):
        return tf.nn.relu(x * 2.0 + 1.0)

    return _convert(f, path)


def one_channel_x2(path: Path) -> Path:
    """1x8x8x1 -> 1x16x16x1: an upscaler of grey images."""
    tf = _tf()

    @tf.function(input_signature=[tf.TensorSpec([1, 8, 8, 1], tf.float32)])
    def f(x):
        return tf.image.resize(x, [16, 16], method="nearest")

    return _convert(f, path)


def dynamic_x2(path: Path) -> Path:
    """1xHxWx3 (dynamic H, W) -> x2 nearest."""
    tf = _tf()

    @tf.function(input_signature=[tf.TensorSpec([1, None, None, 3], tf.float32)])
    def f(x):
        return tf.repeat(tf.repeat(x, 2, axis=1), 2, axis=2)

    return _convert(f, path)


def rgb_x2(path: Path) -> Path:
    """A valid 1x8x8x3 -> 1x16x16x3 model (the base for flatbuffer edits)."""
    tf = _tf()

    @tf.function(input_signature=[tf.TensorSpec([1, 8, 8, 3], tf.float32)])
    def f(x):
        return tf.repeat(tf.repeat(x * 0.5 + 0.25, 2, axis=1), 2, axis=2)

    return _convert(f, path)


def edited(src: Path, dest: Path, how: str) -> Path:
    """A copy of *src* made unloadable (``negative_dim``, ``no_input``, ``input_out_of_range``) or
    memory-hungry (``huge_input``, ``big_input``)."""
    from ai_edge_litert.tools import flatbuffer_utils as fu

    model = fu.read_model(str(src))
    sg = model.subgraphs[0]
    if how == "negative_dim":
        sg.tensors[sg.inputs[0]].shape = [1, -5, 8, 3]
    elif how == "no_input":
        sg.inputs = []
    elif how == "input_out_of_range":
        sg.inputs = [len(sg.tensors) + 100]
    elif how == "huge_input":  # a 30000x30000 input declared in a file of ~100 KB: 10 GB if allocated
        sg.tensors[sg.inputs[0]].shape = [1, 30000, 30000, 3]
    elif how == "big_input":  # 3 GB: under the per-model limit, over a small worker memory limit
        sg.tensors[sg.inputs[0]].shape = [1, 16000, 16000, 3]
    else:
        raise ValueError(how)
    fu.write_model(model, str(dest))
    return dest
