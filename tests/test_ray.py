"""The batch on a real local Ray cluster (a head and a second node): same files, rows and exit codes.

Worker death uses the explicit test hook ``LIA_RAY_TEST_EXIT_ON`` (a file stem; read only
inside the actor, which then calls ``os._exit``), set before the cluster starts so that
every worker inherits it. S3 runs against moto in server mode on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

ray = pytest.importorskip("ray")

from lia_upscale.batch import UsageError  # noqa: E402
from lia_upscale.cli import main  # noqa: E402
from lia_upscale.raybatch import CRASH_HOOK_ENV, Workers, plan, plan_workers  # noqa: E402
from lia_upscale.pipeline import OutputSpec  # noqa: E402

#: A hard limit per test (a hung Ray test would stall CI); raise it on a loaded machine.
pytestmark = [pytest.mark.ray, pytest.mark.timeout(int(os.environ.get("LIA_RAY_TEST_TIMEOUT", "150")))]

CRASH_STEM = "z_kills_its_worker"  # sorted last: the files before it finish before it kills its worker
MB = 1 << 20


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3_env():
    """A moto S3 server on 127.0.0.1 and the AWS variables pointing at it (before the cluster starts)."""
    moto_server = pytest.importorskip("moto.server")
    port = _free_port()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    env = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    yield env
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    server.stop()


@pytest.fixture(scope="module")
def cluster(s3_env):
    """A head node and a second node, 2 CPUs each, started once for the module."""
    from ray.cluster_utils import Cluster

    os.environ[CRASH_HOOK_ENV] = CRASH_STEM
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "object_store_memory": 80 * MB,
                                                      "include_dashboard": False})
    c.add_node(num_cpus=2, object_store_memory=80 * MB)
    c.wait_for_nodes()
    os.environ["RAY_ADDRESS"] = c.address
    yield c
    os.environ.pop("RAY_ADDRESS", None)
    os.environ.pop(CRASH_HOOK_ENV, None)
    ray.shutdown()  # in case a failed test left the driver connected
    c.shutdown()


@pytest.fixture(scope="module")
def random_weights(tmp_path_factory) -> Path:
    """A tiny U x2 network with random weights: outputs that only an identical computation matches."""
    from lia_upscale.models import save_weights
    from lia_upscale.nn import VARIANTS, PlainUSR

    torch.manual_seed(1)
    model = PlainUSR(VARIANTS["U"].with_scale(2)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    path = tmp_path_factory.mktemp("w") / "random-u-x2.safetensors"
    save_weights(path, model, variant="U", scale=2)
    return path


def _image(path: Path, h: int, w: int, seed: int, mode: str = "RGB") -> None:
    rng = np.random.default_rng(seed)
    channels = {"RGB": 3, "RGBA": 4, "L": 1}[mode]
    a = rng.integers(0, 256, (h, w, channels), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(a[..., 0] if mode == "L" else a, mode).save(path)


def _tree(root: Path) -> Path:
    _image(root / "a.png", 9, 11, 1)
    _image(root / "sub" / "b.png", 8, 10, 2, "RGBA")
    _image(root / "sub" / "deeper" / "c.png", 7, 9, 3, "L")
    Image.fromarray(np.random.default_rng(4).integers(0, 256, (10, 12, 3), dtype=np.uint8)).save(
        root / "sub" / "d.jpg", quality=90)
    (root / "sub" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    return root


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _rows(output: str) -> list[dict]:
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


def _run(*args: str):
    return CliRunner().invoke(main, [*args, "--json"], catch_exceptions=False)


def _key(row: dict) -> tuple:
    return row["input"], row["output"], row["status"], row["error"]


def test_plan_workers_gpu_cpu_and_override():
    assert plan_workers({"CPU": 16, "GPU": 2}, "auto", None, 1) == (Workers(2, True, 1), None)
    pool, note = plan_workers({"CPU": 4}, "auto", None, 1)
    assert pool == Workers(3, False, 1) and "no GPU" in note  # one CPU left to Ray Data's own tasks
    assert plan_workers({"CPU": 9}, "cpu", None, 4)[0] == Workers(2, False, 4)
    assert plan_workers({"CPU": 4}, "cpu", 8, 1)[0] == Workers(3, False, 1)  # never more than fit
    with pytest.raises(UsageError, match="no GPU"):
        plan_workers({"CPU": 4}, "cuda", None, 1)  # would wait forever
    assert plan_workers({"CPU": 4}, "cuda", 2, 1)[0] == Workers(2, True, 1)  # the explicit override


def test_plan_without_uri_is_plan_jobs_and_usage_errors_come_before_the_cluster(tmp_path):
    from lia_upscale.batch import plan_jobs

    src = _tree(tmp_path / "in")
    png = OutputSpec(fmt="png")
    assert plan([str(src)], str(tmp_path / "out"), png) == plan_jobs([str(src)], str(tmp_path / "out"), png)
    # a bad model or a missing input is exit 2 on the driver, before Ray is touched
    missing = _run(str(src), str(tmp_path / "out"), "--weights", str(tmp_path / "none.safetensors"), "--ray")
    assert missing.exit_code == 2
    assert _run(str(tmp_path / "nothing"), str(tmp_path / "out"), "--ray").exit_code == 2
    assert _run("-", str(tmp_path / "out.png"), "--ray").exit_code == 2  # streaming stays local
    assert not ray.is_initialized()


def test_ray_batch_matches_local_worker_death_and_rerun(cluster, tmp_path, random_weights):
    """One Ray run covers: bytes and rows equal to the local batch with the tree mirrored, a
    broken file failing alone with the same error, the GPU request falling back to CPU
    actors, the multi-node warning, a dying worker reported alone (exit 1, no temp file,
    the job ends); then a rerun skips everything without starting actors."""
    src = _tree(tmp_path / "in")
    _image(src / "sub" / f"{CRASH_STEM}.png", 6, 5, 9)
    local = _run(str(src), str(tmp_path / "local"), "--weights", str(random_weights))
    assert local.exit_code == 1  # the broken file
    # one actor: every actor start (torch, weights) costs seconds, and the crash below costs two more
    on_ray = _run(str(src), str(tmp_path / "ray"), "--weights", str(random_weights), "--ray", "--ray-workers", "1")
    assert on_ray.exit_code == 1
    assert "the Ray cluster has no GPU: CPU actors" in on_ray.stderr  # the GPU path fell back, no hang
    assert "plain paths on a multi-node cluster" in on_ray.stderr

    # the same bytes, tree mirrored, nothing else (no temporary file) in the output
    local_files, ray_files = _files(tmp_path / "local"), _files(tmp_path / "ray")
    assert sorted(ray_files) == ["a.png", "sub/b.png", "sub/d.jpg", "sub/deeper/c.png"]
    assert ray_files == {k: v for k, v in local_files.items() if CRASH_STEM not in k}

    # the same rows (paths, status, error); the broken file fails alone, the crash alone
    def by_input(rows, out):
        return sorted(_key({**r, "output": r["output"].replace(out, "OUT")}) for r in rows)

    crash = str(src / "sub" / f"{CRASH_STEM}.png")
    local_rows = [r for r in _rows(local.stdout) if r["input"] != crash]
    ray_rows = _rows(on_ray.stdout)
    assert [(r["status"], r["error"]) for r in ray_rows if r["input"] == crash] == [("failed", "worker crashed")]
    ray_rows = [r for r in ray_rows if r["input"] != crash]
    assert by_input(ray_rows, str(tmp_path / "ray")) == by_input(local_rows, str(tmp_path / "local"))
    failed = [r for r in ray_rows if r["status"] == "failed"]
    assert [r["input"] for r in failed] == [str(src / "sub" / "broken.png")]
    assert failed[0]["error"].startswith(str(src / "sub" / "broken.png") + ": ")

    (src / "sub" / "broken.png").unlink()
    (src / "sub" / f"{CRASH_STEM}.png").unlink()
    again = _run(str(src), str(tmp_path / "ray"), "--weights", str(random_weights), "--ray")
    statuses = {Path(r["input"]).name: r["status"] for r in _rows(again.stdout)}
    assert statuses == {"a.png": "skipped", "b.png": "skipped", "c.png": "skipped", "d.jpg": "skipped"}
    assert again.exit_code == 0
    assert _files(tmp_path / "ray") == ray_files

    # --device cuda on a cluster without GPUs would wait forever: refused, exit 2
    refused = _run(str(src), str(tmp_path / "ray"), "--ray", "--overwrite", "--device", "cuda")
    assert refused.exit_code == 2 and "no GPU" in refused.stderr


def test_an_object_that_appears_while_the_image_is_made_is_kept(s3_env, tmp_path, random_weights):
    """The worker's PUT keeps an object that appeared at its key after the driver listed the
    bucket (reported skipped), unless the spec overwrites."""
    from lia_upscale.raybatch.worker import FileUpscaler

    boto3 = pytest.importorskip("boto3")
    s3 = boto3.client("s3", endpoint_url=s3_env["AWS_ENDPOINT_URL"], region_name="us-east-1")
    s3.create_bucket(Bucket="appeared")
    _image(tmp_path / "a.png", 20, 24, seed=3)
    s3.put_object(Bucket="appeared", Key="x2/a.png", Body=b"theirs")
    args = {"weights": str(random_weights), "device": "cpu"}
    row = FileUpscaler(args, 1, OutputSpec()).one(str(tmp_path / "a.png"), "s3://appeared/x2/a.png", "PNG")
    assert row["status"] == "skipped" and "appeared while the image was made" in row["error"], row
    assert s3.get_object(Bucket="appeared", Key="x2/a.png")["Body"].read() == b"theirs"
    row = FileUpscaler(args, 1, OutputSpec(overwrite=True)).one(str(tmp_path / "a.png"), "s3://appeared/x2/a.png",
                                                                "PNG")
    assert row["status"] == "done", row
    assert s3.get_object(Bucket="appeared", Key="x2/a.png")["Body"].read()[:8] == b"\x89PNG\r\n\x1a\n"


def test_s3_input_and_output(cluster, s3_env, tmp_path, random_weights):
    boto3 = pytest.importorskip("boto3")
    s3 = boto3.client("s3", endpoint_url=s3_env["AWS_ENDPOINT_URL"], region_name="us-east-1")
    s3.create_bucket(Bucket="photos")
    s3.create_bucket(Bucket="upscaled")
    src = _tree(tmp_path / "in")
    (src / "sub" / "broken.png").unlink()
    for p in sorted(src.rglob("*")):
        if p.is_file():
            s3.upload_file(str(p), "photos", f"shoot/{p.relative_to(src).as_posix()}")
    s3.put_object(Bucket="photos", Key="shoot/notes.txt", Body=b"not an image")

    local = _run(str(src), str(tmp_path / "local"), "--weights", str(random_weights))
    assert local.exit_code == 0
    result = _run("s3://photos/shoot", "s3://upscaled/x2", "--weights", str(random_weights), "--ray",
                  "--ray-workers", "1")
    assert result.exit_code == 0, result.stderr
    assert "plain paths" not in result.stderr  # URIs only
    rows = _rows(result.stdout)
    assert sorted((r["input"], r["output"], r["status"]) for r in rows) == [
        (f"s3://photos/shoot/{rel}", f"s3://upscaled/x2/{rel}", "done")
        for rel in ("a.png", "sub/b.png", "sub/d.jpg", "sub/deeper/c.png")]
    listed = s3.list_objects_v2(Bucket="upscaled")["Contents"]
    got = {o["Key"]: s3.get_object(Bucket="upscaled", Key=o["Key"])["Body"].read() for o in listed}
    assert got == {f"x2/{k}": v for k, v in _files(tmp_path / "local").items()}  # nothing else: no temp

    again = _run("s3://photos/shoot", "s3://upscaled/x2", "--weights", str(random_weights), "--ray")
    assert again.exit_code == 0
    assert {r["status"] for r in _rows(again.stdout)} == {"skipped"}
