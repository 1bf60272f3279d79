"""Engine cache logic without TensorRT: cache keys, sidecars, the checks that refuse a mismatched or
stale engine (with messages that say what differs), profile choice, and the ONNX I/O reader."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from perception_edge.backends.tensorrt import cache as ec
from perception_edge.backends.tensorrt.cache import BatchProfile, RuntimeIdentity
from perception_edge.backends.tensorrt.onnx_io import read_onnx_io
from perception_edge.core import files
from perception_edge.core.errors import ConfigError, ModelError

from onnx_graphs import segmentation_graph

XAVIER = RuntimeIdentity("8.5.2.2", "Xavier", "7.2")
ORIN = RuntimeIdentity("10.3.0.30", "Orin", "8.7")


@pytest.fixture()
def seg_onnx(tmp_path):
    pytest.importorskip("onnx")
    return segmentation_graph(tmp_path / "lane.onnx", size=(96, 128), classes=3)


def settings_for(path, **kw):
    return ec.make_settings(read_onnx_io(str(path)), **kw)


def build_fake_engine(tmp_path, onnx_path, identity=XAVIER, settings=None, payload=b"serialized engine"):
    """An engine file (any bytes: never deserialized here) with the sidecar build-engine writes."""
    settings = settings or settings_for(onnx_path)
    onnx_sha = files.sha256_file(onnx_path)
    key = ec.cache_key(onnx_sha, settings, identity)
    engine = ec.engine_path_for(onnx_path, settings, key, str(tmp_path / "cache"))
    files.atomic_write(engine, payload)
    sidecar = ec.make_sidecar(onnx_path=onnx_path, onnx_sha256=onnx_sha, settings=settings, identity=identity,
                              key=key, engine_sha256=files.sha256_bytes(payload),
                              onnx_metadata={"names": "{0: 'lane'}"})
    ec.write_sidecar(engine, sidecar)
    return engine, key, sidecar


# -- cache key -------------------------------------------------------------------------------------

def test_same_inputs_give_the_same_key(seg_onnx):
    s = settings_for(seg_onnx)
    sha = files.sha256_file(seg_onnx)
    assert ec.cache_key(sha, s, XAVIER) == ec.cache_key(sha, settings_for(seg_onnx), XAVIER)
    # another build of the same TensorRT release (8.5.2.2 vs 8.5.2.5) loads the same engines
    assert ec.cache_key(sha, s, XAVIER) == ec.cache_key(sha, s, RuntimeIdentity("8.5.2.5", "Xavier", "7.2"))


def test_any_change_gives_another_key(seg_onnx, tmp_path):
    onnx_io = read_onnx_io(str(seg_onnx))
    base = ec.make_settings(onnx_io)
    sha = files.sha256_file(seg_onnx)
    key = ec.cache_key(sha, base, XAVIER)
    changed_bytes = bytearray(seg_onnx.read_bytes())
    changed_bytes[-1] ^= 1
    variants = {
        "onnx bytes": ec.cache_key(files.sha256_bytes(bytes(changed_bytes)), base, XAVIER),
        "precision": ec.cache_key(sha, ec.make_settings(onnx_io, precision="fp32"), XAVIER),
        "max batch": ec.cache_key(sha, ec.make_settings(onnx_io, max_batch=8), XAVIER),
        "opt batch": ec.cache_key(sha, ec.make_settings(onnx_io, opt_batch=2), XAVIER),
        "min batch": ec.cache_key(sha, ec.make_settings(onnx_io, min_batch=2), XAVIER),
        "workspace": ec.cache_key(sha, ec.make_settings(onnx_io, workspace_mb=2048), XAVIER),
        "dla": ec.cache_key(sha, ec.make_settings(onnx_io, dla_core=0), XAVIER),
        "int8 calibration": ec.cache_key(sha, ec.make_settings(onnx_io, precision="int8", calibrator="entropy",
                                                               calibration_sha256="a" * 64), XAVIER),
        "int8 other calibration set": ec.cache_key(sha, ec.make_settings(
            onnx_io, precision="int8", calibrator="entropy", calibration_sha256="b" * 64), XAVIER),
        "calibrator": ec.cache_key(sha, ec.make_settings(onnx_io, precision="int8", calibrator="minmax",
                                                         calibration_sha256="a" * 64), XAVIER),
        "tensorrt version": ec.cache_key(sha, base, RuntimeIdentity("8.6.2.3", "Xavier", "7.2")),
        "gpu name": ec.cache_key(sha, base, RuntimeIdentity("8.5.2.2", "Orin", "7.2")),
        "compute capability": ec.cache_key(sha, base, RuntimeIdentity("8.5.2.2", "Xavier", "8.7")),
    }
    for what, other in variants.items():
        assert other != key, what
    assert len(set(variants.values())) == len(variants)


def test_engine_file_names(seg_onnx, tmp_path):
    s = settings_for(seg_onnx)
    key = ec.cache_key(files.sha256_file(seg_onnx), s, XAVIER)
    assert ec.engine_path_for(seg_onnx, s, key) == seg_onnx.parent / f"lane.fp16.b1-4.{key[:16]}.engine"
    assert ec.engine_path_for(seg_onnx, s, key, str(tmp_path / "c")).parent == tmp_path / "c"
    fixed_dla = settings_for(seg_onnx, min_batch=2, max_batch=2, opt_batch=2, dla_core=1)
    assert ec.engine_file_name(seg_onnx, fixed_dla, key) == f"lane.fp16.b2.dla1.{key[:16]}.engine"
    assert ec.sidecar_path(tmp_path / "x.engine") == tmp_path / "x.engine.json"


# -- settings --------------------------------------------------------------------------------------

def test_settings_from_a_dynamic_batch_model(seg_onnx):
    s = settings_for(seg_onnx)
    assert s.dynamic_batch and s.batch == BatchProfile(1, 4, 4)
    assert s.inputs == (("images", (3, 96, 128)),)
    assert s.profile_shapes() == {"images": ((1, 3, 96, 128), (4, 3, 96, 128), (4, 3, 96, 128))}
    assert s.build_flags == ["FP16"]
    assert settings_for(seg_onnx, min_batch=2, default_max_batch=6).batch == BatchProfile(2, 6, 6)
    int8 = settings_for(seg_onnx, precision="int8", calibrator="minmax", calibration_sha256="c" * 64, dla_core=0)
    assert int8.build_flags == ["FP16", "INT8", "GPU_FALLBACK"]


def test_settings_are_validated(seg_onnx, tmp_path):
    with pytest.raises(ConfigError, match="min <= opt <= max"):
        settings_for(seg_onnx, min_batch=4, max_batch=2)
    with pytest.raises(ConfigError, match="DLA runs FP16 or INT8"):
        settings_for(seg_onnx, precision="fp32", dla_core=0)
    with pytest.raises(ConfigError, match="INT8 needs calibration"):
        settings_for(seg_onnx, precision="int8", calibrator="entropy")
    with pytest.raises(ConfigError, match="calibrator"):
        settings_for(seg_onnx, precision="int8", calibrator="percentile", calibration_sha256="a" * 64)
    with pytest.raises(ConfigError, match="not one of"):
        settings_for(seg_onnx, precision="bf16")
    static = segmentation_graph(tmp_path / "static.onnx", batch=1)
    assert settings_for(static).batch == BatchProfile(1, 1, 1)
    assert not settings_for(static).dynamic_batch
    with pytest.raises(ConfigError, match="batch is fixed at 1"):
        settings_for(static, max_batch=4)


def test_dynamic_spatial_size_needs_an_input_size(tmp_path):
    pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    from onnx_graphs import save

    path = save([helper.make_node("Relu", ["images"], ["out"])],
                [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["n", 3, "h", "w"])],
                [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["n", 3, "h", "w"])], [], tmp_path / "dyn.onnx")
    with pytest.raises(ConfigError, match="dynamic dimensions .*--input-size"):
        settings_for(path)
    assert settings_for(path, input_size=416).inputs == (("images", (3, 416, 416)),)


# -- sidecar and check_engine ----------------------------------------------------------------------

def test_sidecar_records_the_build(seg_onnx, tmp_path):
    engine, key, _ = build_fake_engine(tmp_path, seg_onnx)
    data = ec.read_sidecar(engine)
    assert data["tensorrt_version"] == "8.5.2.2" and data["gpu_name"] == "Xavier"
    assert data["compute_capability"] == "7.2" and data["precision"] == "fp16"
    assert data["inputs"] == [{"name": "images", "shape": [-1, 3, 96, 128]}]
    assert data["profiles"] == [{"images": {"min": [1, 3, 96, 128], "opt": [4, 3, 96, 128], "max": [4, 3, 96, 128]}}]
    assert data["onnx"]["sha256"] == files.sha256_file(seg_onnx)
    assert data["onnx"]["path"] == str(seg_onnx.resolve())
    assert data["build_flags"] == ["FP16"] and data["cache_key"] == key
    assert data["engine_sha256"] == files.sha256_bytes(b"serialized engine")
    assert data["calibration"] is None  # not an INT8 engine
    assert data["model_metadata"] == {"names": "{0: 'lane'}"}
    for field in ("created", "perception_edge_version", "workspace_mb", "dla_core"):
        assert field in data
    assert ec.sidecar_batch_profiles(data) == [BatchProfile(1, 4, 4)]
    # INT8 sidecars record the calibration set's digest
    s8 = settings_for(seg_onnx, precision="int8", calibrator="entropy", calibration_sha256="d" * 64)
    data8 = ec.make_sidecar(onnx_path=seg_onnx, onnx_sha256="0" * 64, settings=s8, identity=XAVIER, key="k" * 64,
                            calibration={"source": "/data/frames", "frames": 500})
    assert data8["calibration"]["sha256"] == "d" * 64 and data8["calibration"]["calibrator"] == "entropy"
    assert data8["build_flags"] == ["FP16", "INT8"]


def test_matching_engine_passes(seg_onnx, tmp_path):
    engine, key, _ = build_fake_engine(tmp_path, seg_onnx)
    check = ec.check_engine(engine, RuntimeIdentity("8.5.2.5", "Xavier", "7.2"), key=key,
                            engine_sha256=files.sha256_bytes(b"serialized engine"))
    assert check.sidecar["cache_key"] == key and check.warnings == []


def test_other_tensorrt_and_gpu_are_refused_naming_both(seg_onnx, tmp_path):
    engine, _, _ = build_fake_engine(tmp_path, seg_onnx)
    with pytest.raises(ModelError) as err:
        ec.check_engine(engine, ORIN)
    msg = str(err.value)
    assert f"engine {engine.name} was built with TensorRT 8.5.2 on 'Xavier' (sm_72), this is TensorRT 10.3.0 " \
           "on 'Orin' (sm_87)" in msg
    assert "TensorRT version, compute capability, GPU differ" in msg
    assert "rebuild with perception-edge build-engine " + str(seg_onnx.resolve()) in msg
    assert "--precision fp16 --min-batch 1 --opt-batch 4 --max-batch 4" in msg
    assert "\n" not in msg


@pytest.mark.parametrize("identity, differs", [
    (RuntimeIdentity("8.6.2.3", "Xavier", "7.2"), "(TensorRT version differ)"),
    (RuntimeIdentity("8.5.2.2", "Orin", "8.7"), "(compute capability, GPU differ)"),
    (RuntimeIdentity("8.5.2.2", "NVIDIA GeForce RTX 3060", "7.2"), "(GPU differ)"),
])
def test_each_mismatch_is_named(seg_onnx, tmp_path, identity, differs):
    engine, _, _ = build_fake_engine(tmp_path, seg_onnx)
    with pytest.raises(ModelError, match=differs.replace("(", r"\(").replace(")", r"\)")):
        ec.check_engine(engine, identity)


def test_missing_or_unreadable_sidecar_is_an_error_unless_opted_out(seg_onnx, tmp_path):
    engine, _, _ = build_fake_engine(tmp_path, seg_onnx)
    side = ec.sidecar_path(engine)
    side.unlink()
    with pytest.raises(ModelError, match=r"has no sidecar .*engine\.check_sidecar false"):
        ec.check_engine(engine, XAVIER)
    check = ec.check_engine(engine, XAVIER, require_sidecar=False)
    assert check.sidecar is None and len(check.warnings) == 1
    assert "loaded anyway" in check.warnings[0]
    side.write_text("{not json")
    with pytest.raises(ModelError, match="unreadable"):
        ec.check_engine(engine, XAVIER)
    side.write_text(json.dumps({"precision": "fp16"}))
    with pytest.raises(ModelError, match="unreadable .*missing tensorrt_version"):
        ec.check_engine(engine, XAVIER)


def test_changed_onnx_makes_the_engine_stale(seg_onnx, tmp_path):
    engine, _, _ = build_fake_engine(tmp_path, seg_onnx)
    # same bytes, new mtime (copied, touched): not stale
    os.utime(seg_onnx, ns=(1, 1))
    assert ec.check_engine(engine, XAVIER).sidecar is not None
    # other model bytes at the recorded path: stale
    segmentation_graph(seg_onnx, size=(96, 128), classes=2)
    with pytest.raises(ModelError, match=r"is stale: its model .*lane\.onnx changed after the build"):
        ec.check_engine(engine, XAVIER)
    assert ec.check_engine(engine, XAVIER, check_onnx=False).sidecar is not None
    # a deployed engine without its ONNX is fine
    seg_onnx.unlink()
    assert ec.check_engine(engine, XAVIER).sidecar is not None


def test_replaced_engine_file_and_other_settings_are_refused(seg_onnx, tmp_path):
    engine, key, _ = build_fake_engine(tmp_path, seg_onnx)
    with pytest.raises(ModelError, match="not the file its sidecar describes"):
        ec.check_engine(engine, XAVIER, engine_sha256=files.sha256_bytes(b"another engine"))
    with pytest.raises(ModelError, match="records other build settings"):
        ec.check_engine(engine, XAVIER, key="f" * 64)


def test_rebuild_command_from_a_sidecar():
    data = {"onnx": {"path": "/models/det.onnx"}, "precision": "int8", "batch": {"min": 2, "opt": 2, "max": 2},
            "workspace_mb": 512, "dla_core": 0,
            "calibration": {"source": "/data/bag", "topic": "/cam/image_raw", "frames": 300,
                            "calibrator": "minmax", "cache": "/e/det.calib"}}
    assert ec.rebuild_command(data, "/e/det.engine") == (
        "perception-edge build-engine /models/det.onnx --precision int8 --batch 2 --workspace-mb 512 "
        "--dla-core 0 --calibration /data/bag --calibration-topic /cam/image_raw --calibration-frames 300 "
        "--calibrator minmax --calibration-cache /e/det.calib --output /e/det.engine")
    assert ec.rebuild_command(None) == "perception-edge build-engine MODEL.onnx"


# -- profiles --------------------------------------------------------------------------------------

def test_profile_choice_for_a_batch_size():
    one = [BatchProfile(1, 4, 4)]
    assert [ec.choose_profile(one, n) for n in (1, 2, 4, 5, 0)] == [0, 0, 0, None, None]
    several = [BatchProfile(1, 1, 1), BatchProfile(2, 4, 8), BatchProfile(1, 2, 8)]
    assert ec.choose_profile(several, 1) == 0  # exact opt
    assert ec.choose_profile(several, 2) == 2  # opt 2 beats opt 4
    assert ec.choose_profile(several, 4) == 1
    assert ec.choose_profile(several, 7) == 1  # nearest opt
    assert ec.choose_profile(several, 9) is None


def test_batches_larger_than_max_are_split():
    assert ec.split_batch(10, [BatchProfile(1, 4, 4)]) == [4, 4, 2]
    assert ec.split_batch(3, [BatchProfile(1, 4, 4)]) == [3]
    assert ec.split_batch(0, [BatchProfile(1, 4, 4)]) == []
    assert ec.split_batch(5, [BatchProfile(2, 4, 4)]) == [4, 2]  # rest 1 padded to the minimum 2
    assert ec.split_batch(9, [BatchProfile(1, 1, 1), BatchProfile(2, 8, 8)]) == [8, 1]
    assert ec.split_batch(3, [BatchProfile(4, 4, 4)]) == [4]  # fixed batch: padded
    assert sum(ec.split_batch(37, [BatchProfile(1, 4, 8)])) == 37


# -- ONNX reader and digests -----------------------------------------------------------------------

def test_onnx_reader_matches_onnx(tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    from onnx_graphs import save

    w = numpy_helper.from_array(np.ones((3, 3, 1, 1), np.float32), "w")
    graph_inputs = [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3, 32, 48]),
                    helper.make_tensor_value_info("w", TensorProto.FLOAT, [3, 3, 1, 1])]  # old-style weight input
    nodes = [helper.make_node("Conv", ["images", "w"], ["y"]),
             helper.make_node("ReduceMax", ["y"], ["m"], keepdims=0),
             helper.make_node("Cast", ["m"], ["num_dets"], to=TensorProto.INT32)]
    path = save(nodes, graph_inputs,
                [helper.make_tensor_value_info("y", TensorProto.FLOAT,
                                               ["batch", 3, 32, 48]),
                 helper.make_tensor_value_info("num_dets", TensorProto.INT32, [])],
                [w], tmp_path / "m.onnx", metadata={"stride": "32", "names": "{0: 'car'}"})
    io = read_onnx_io(str(path))
    model = onnx.load(str(path))
    assert [t.name for t in io.inputs] == ["images"]  # the initializer listed as input is not one
    assert io.inputs[0].shape == ("batch", 3, 32, 48) and io.inputs[0].dtype == np.float32
    assert [t.name for t in io.outputs] == [o.name for o in model.graph.output]
    assert io.outputs[1].dtype == np.int32 and io.outputs[1].shape == ()
    assert io.metadata == {"stride": "32", "names": "{0: 'car'}"}
    assert read_onnx_io(path.read_bytes()) == io


def test_onnx_reader_rejects_other_files(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\xff\xff\xff\xff not a protobuf")
    with pytest.raises(ModelError, match="not a valid ONNX model"):
        read_onnx_io(str(bad))
    bad.write_bytes(b"")
    with pytest.raises(ModelError):
        read_onnx_io(str(bad))


def test_digest_of_a_calibration_folder_follows_its_content(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(b"aaa")
    (folder / "b.jpg").write_bytes(b"bbb")
    first = files.digest_path(folder)
    assert files.digest_path(folder) == first
    (folder / "b.jpg").write_bytes(b"bbc")
    assert files.digest_path(folder) != first
    big = tmp_path / "big.bin"
    big.write_bytes(b"x" * 3000)
    small_limit = files.digest_path(big, full_limit=1000)
    assert small_limit == files.digest_path(big, full_limit=1000) and small_limit != files.digest_path(big)
