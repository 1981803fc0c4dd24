"""INT8 parameter files address tensors by canonical keys (srdeploy.quantize.int8_params.canonical_keys):
a file holds when the converter stores the same graph in another order (issue 17: a conv_split file made at
256x256 was refused at 64x64, where the converter emitted two independent convs the other way round)."""
from __future__ import annotations

import json
import tempfile

import numpy as np
import pytest

from srdeploy.errors import SrDeployError
from srdeploy.quantize import int8_params as ip
from srdeploy.quantize.ranges import quantize_calibrated
from srdeploy.runtime import TFLiteRunner

SIZE = 16


@pytest.fixture(scope="module")
def calibrated() -> bytes:
    """A calibrated float graph shaped like a conv_split distillation block: one input read by two
    independent convs of the same shape (the pair a converter may store in either order), each with its
    LeakyReLU, one concatenated, the other read by a third conv, and a residual add."""
    import tensorflow as tf

    from srdeploy.quantize.ranges import calibrate

    rng = np.random.default_rng(0)
    w1, w2 = (rng.normal(0, 0.3, (3, 3, 3, 4)).astype(np.float32) for _ in range(2))
    w3 = rng.normal(0, 0.3, (3, 3, 4, 4)).astype(np.float32)
    w4 = rng.normal(0, 0.3, (1, 1, 8, 3)).astype(np.float32)

    class Block(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([1, SIZE, SIZE, 3], tf.float32)])
        def __call__(self, x):
            a = tf.nn.leaky_relu(tf.nn.conv2d(x, w1, 1, "SAME"), 0.05)
            b = tf.nn.leaky_relu(tf.nn.conv2d(x, w2, 1, "SAME"), 0.05)
            c = tf.nn.conv2d(b, w3, 1, "SAME")
            return tf.nn.conv2d(tf.concat([a, c], axis=3), w4, 1, "SAME") + x

    with tempfile.TemporaryDirectory() as d:
        m = Block()
        tf.saved_model.save(m, d, signatures=m.__call__)
        return calibrate(d, rng.random((4, SIZE, SIZE, 3), dtype=np.float32))


def _reordered(blob: bytes, seed: int) -> tuple[bytes, np.ndarray]:
    """*blob* with its tensors stored in a random order and its operators in a random order that still runs
    (each after the producers of its inputs): the same graph as another conversion may store it. Returns the
    flatbuffer and ``perm`` (old tensor index -> new)."""
    from ai_edge_litert.tools import flatbuffer_utils as fu

    model = fu.convert_bytearray_to_object(bytearray(blob))
    sg = model.subgraphs[0]
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(sg.tensors))
    tensors = [None] * len(sg.tensors)
    for old, new in enumerate(perm):
        tensors[new] = sg.tensors[old]
    sg.tensors = tensors
    remap = lambda idx: np.array([perm[i] if i >= 0 else i for i in idx], np.int32)  # noqa: E731
    for op in sg.operators:
        op.inputs, op.outputs = remap(op.inputs), remap(op.outputs)
    sg.inputs, sg.outputs = remap(sg.inputs), remap(sg.outputs)
    for sd in model.signatureDefs or []:
        for t in list(sd.inputs or []) + list(sd.outputs or []):
            t.tensorIndex = int(perm[t.tensorIndex])
    made = set(range(len(sg.tensors))) - {int(o) for op in sg.operators for o in op.outputs}  # inputs, constants
    order, left = [], list(sg.operators)
    while left:  # a random topological order
        ready = [op for op in left if all(int(i) in made for i in op.inputs if i >= 0)]
        op = ready[rng.integers(len(ready))]
        order.append(op)
        left.remove(op)
        made |= {int(o) for o in op.outputs}
    sg.operators = order
    return bytes(fu.convert_object_to_bytearray(model)), perm


def _tuned(blob: bytes) -> ip.Int8Params:
    """The graph's weights and ranges, each moved (as QAT would): applied in the wrong place, it shows."""
    p = ip.extract(blob, {"model": "block"})
    rng = np.random.default_rng(1)
    p.weights = {i: (w * (1 + 0.1 * rng.standard_normal(w.shape))).astype(np.float32) for i, w in p.weights.items()}
    p.ranges = {i: (lo * float(rng.uniform(0.7, 1.0)), hi * float(rng.uniform(0.7, 1.0)))
                for i, (lo, hi) in p.ranges.items()}
    return p


def _int8_output(calibrated: bytes, params: ip.Int8Params) -> np.ndarray:
    model = quantize_calibrated(ip.apply(calibrated, params), "float32")
    x = np.random.default_rng(2).random((1, SIZE, SIZE, 3), dtype=np.float32)
    return TFLiteRunner(model_content=model)(x)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_keys_do_not_depend_on_the_order_the_graph_is_stored_in(calibrated, seed):
    keys = ip.canonical_keys(ip._parse(calibrated))
    assert len(set(keys)) == len(keys)  # this block's structure tells every tensor apart
    other, perm = _reordered(calibrated, seed)
    assert ip.graph_signature(ip._parse(other)) != ip.graph_signature(ip._parse(calibrated))
    moved = ip.canonical_keys(ip._parse(other))
    assert all(moved[perm[i]] == k for i, k in enumerate(keys))


def test_a_file_holds_on_a_reordered_graph_and_gives_the_same_int8_model(calibrated, tmp_path):
    params = _tuned(calibrated)
    assert params.keys is not None and params.canonical is not None
    path = ip.save(params, tmp_path / "p.npz")
    loaded = ip.load(path)
    assert loaded.keys == params.keys and loaded.canonical == params.canonical
    assert loaded.describe()["format"] == ip.FORMAT
    ref = _int8_output(calibrated, loaded)
    assert not np.array_equal(ref, _int8_output(calibrated, ip.extract(calibrated)))  # the tuning shows
    for seed in (0, 1):
        other, _ = _reordered(calibrated, seed)
        np.testing.assert_array_equal(_int8_output(other, loaded), ref)
    # a file without keys (format v1) is applied by index only: on the reordered graph it is refused
    v1 = ip.Int8Params(params.signature, params.weights, params.ranges, {})
    with pytest.raises(SrDeployError, match="made for another graph"):
        ip.apply(_reordered(calibrated, 0)[0], v1)
    np.testing.assert_array_equal(_int8_output(calibrated, v1), ref)  # ...and by index on its own graph


def test_keys_of_another_graph_are_refused(calibrated):
    params = _tuned(calibrated)
    wrong = ip.Int8Params("x" * 64, params.weights, params.ranges, {}, keys=params.keys, canonical="y" * 64)
    with pytest.raises(SrDeployError, match="structure differs"):
        ip.apply(calibrated, wrong)
    a, b = sorted(params.ranges)[:2]
    swapped = dict(params.keys)
    swapped[a], swapped[b] = "0" * 32, params.keys[a]
    with pytest.raises(SrDeployError, match="found 0 times"):
        ip.apply(_reordered(calibrated, 0)[0], ip.Int8Params("x" * 64, params.weights, params.ranges, {},
                                                              keys=swapped, canonical=params.canonical))


@pytest.mark.parametrize("change", ["not a dict", "a key missing", "a key twice"])
def test_malformed_keys_are_one_line(calibrated, tmp_path, change):
    path = ip.save(_tuned(calibrated), tmp_path / "p.npz")
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(bytes(arrays["meta"]).decode())
    if change == "not a dict":
        meta["keys"] = ["a"]
    elif change == "a key missing":
        meta["keys"].pop(next(iter(meta["keys"])))
    else:
        first, second = list(meta["keys"])[:2]
        meta["keys"][second] = meta["keys"][first]
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    bad = tmp_path / "bad.npz"
    ip.savez_to(bad, arrays)
    with pytest.raises(SrDeployError, match="canonical keys") as e:
        ip.load(bad)
    assert "\n" not in str(e.value)


def test_port_onto_the_same_graph_adds_the_keys_and_changes_nothing_else(calibrated, tmp_path):
    """``python -m srdeploy.quantize.port JOB JOB V1 --out V2``: how a file made before the keys gets them."""
    from srdeploy.quantize.port import port

    params = _tuned(calibrated)
    v1 = ip.Int8Params(params.signature, params.weights, params.ranges, {"model": "block"})
    v2 = port(calibrated, v1, calibrated)
    assert v2.keys == params.keys and v2.canonical == params.canonical and v2.signature == v1.signature
    assert v2.ranges == v1.ranges and v2.weights.keys() == v1.weights.keys()
    assert all(np.array_equal(v2.weights[i], w) for i, w in v1.weights.items())
    other, _ = _reordered(calibrated, 3)
    np.testing.assert_array_equal(_int8_output(other, v2), _int8_output(calibrated, v1))
