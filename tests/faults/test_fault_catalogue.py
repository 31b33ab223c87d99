"""The fault catalogue: kill -9 at random points of training's checkpoint writes, prediction, conversion and the
MGCL encoder folder; a read-only output folder; a full disk (a small tmpfs); concurrent predictions into one
folder. Each case must end with the old state or the new one -- never a mix, never a half-written file under a
final name -- and a user-facing failure must be one clear line, not a traceback. The table of what was
injected and what was found is printed at the end (run with ``-s``) and written to
``$NNUNET_CAUSAL_TEST_ARTEFACTS/fault_catalogue.md`` when that is set.

Mounting a tmpfs needs root; where that is refused the two disk cases skip (and fail under CI=true)."""
from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.inference.tiny_model import find_our_trainers, make_model_folder

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
RNG = random.Random(31)
ROWS = []
N_CASES = 16


def record(case: str, fault: str, found: str, verdict: str) -> None:
    ROWS.append((case, fault, found, verdict))


@pytest.fixture(scope="module", autouse=True)
def table():
    yield
    lines = ["| case | fault injected | what was found | verdict |", "|---|---|---|---|"]
    lines += [f"| {c} | {f} | {w} | {v} |" for c, f, w, v in ROWS]
    text = "\n".join(lines)
    print("\n\nFault catalogue\n" + text)
    artefacts = os.environ.get("NNUNET_CAUSAL_TEST_ARTEFACTS")
    if artefacts:
        Path(artefacts).mkdir(parents=True, exist_ok=True)
        (Path(artefacts) / "fault_catalogue.md").write_text(text + "\n")


def spawn(cmd, env=None, **kw):
    return subprocess.Popen(cmd, env=env, cwd=ROOT, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, **kw)


def kill(proc) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=60)


def wait_until(condition, proc, what: str, timeout: float = 600) -> None:
    end = time.time() + timeout
    while not condition():
        if proc.poll() is not None:
            raise AssertionError(f"the process ended (exit {proc.returncode}) before {what}: {proc.stderr.read()[-2000:]}")
        if time.time() > end:
            kill(proc)
            raise AssertionError(f"{what} did not happen within {timeout} s")
        time.sleep(0.02)


def temps(folder: Path):
    return sorted(p.name for p in Path(folder).rglob(".tmp_*"))


def child(kind: str, folder: Path, first: int, last: int):
    return spawn([sys.executable, "-m", "tests.faults.fault_children", kind, str(folder), str(first), str(last)])


def published(folder: Path) -> int:
    try:
        return int((folder / "published.txt").read_text() or 0)
    except (OSError, ValueError):
        return 0


# ---------------------------------------------------------------- training: checkpoint writes
def test_training_checkpoint_killed_at_random_points(tmp_path):
    from nnunet_causal.files import load_torch_file

    for point in range(3):
        folder = tmp_path / f"run{point}"
        folder.mkdir()
        stop_after = RNG.randint(2, 6)
        proc = child("checkpoint", folder, 1, 1000)
        wait_until(lambda: published(folder) >= stop_after, proc, "the checkpoints were written")
        time.sleep(RNG.uniform(0, 0.2))                        # somewhere inside a later write
        kill(proc)
        ckpt = load_torch_file(folder / "checkpoint_latest.pth")  # whole: it loads
        epoch = ckpt["current_epoch"]
        assert epoch >= stop_after and ckpt["logging"]["train_losses"] == [float(epoch)]
        left = temps(folder)
        resumed = child("checkpoint", folder, epoch + 1, epoch + 1)
        assert resumed.wait(timeout=300) == 0
        assert load_torch_file(folder / "checkpoint_latest.pth")["current_epoch"] == epoch + 1
        assert temps(folder) == []
        record("training: checkpoint_latest.pth write", f"kill -9 after >= {stop_after} checkpoints + a random "
               f"0-0.2 s", f"epoch {epoch} loads whole; {len(left)} temporary file(s), removed by the next write",
               "old or new, never a mix")


# ---------------------------------------------------------------- MGCL encoder folder
def test_mgcl_encoder_folder_killed_at_random_points(tmp_path):
    from nnunet_causal.files import load_torch_file
    from nnunet_causal.text.encoders import MGCL_METADATA

    for point in range(3):
        folder = tmp_path / f"run{point}"
        folder.mkdir()
        stop_after = RNG.randint(1, 3)
        proc = child("encoder", folder, 1, 1000)
        wait_until(lambda: published(folder) >= stop_after, proc, "an encoder folder was published")
        time.sleep(RNG.uniform(0, 0.5))
        kill(proc)
        enc = folder / "encoder"
        leftovers = sorted(p.name for p in folder.iterdir() if p.name.startswith((".tmp_", ".old_")))
        if enc.exists():
            version = int((enc / "text.txt").read_text().split()[1])
            meta = json.loads((enc / MGCL_METADATA).read_text())
            assert meta["epochs"] == version >= stop_after   # one version throughout
            load_torch_file(enc / "image_head.pth")
            load_torch_file(enc / "image_encoder.pth")
            state = f"version {version}, consistent"
        else:                                               # killed between the two renames: the backup holds it
            assert any(n.startswith(".old_encoder_") for n in leftovers)
            state = "between the renames: previous version in the backup"
        again = child("encoder", folder, 900, 900)
        assert again.wait(timeout=300) == 0
        assert (enc / "text.txt").read_text().startswith("version 900")
        assert not [p for p in folder.iterdir() if p.name.startswith((".tmp_", ".old_"))]
        record("MGCL: encoder folder replaced", f"kill -9 after >= {stop_after} versions + a random 0-0.5 s",
               f"{state}; {len(leftovers)} leftover(s), cleaned by the next run", "old or new, never a mix")


# ---------------------------------------------------------------- prediction
@pytest.fixture(scope="module")
def prediction_setup(tmp_path_factory):
    """(model folder, images folder, reference outputs of one undisturbed run, environment)."""
    root = tmp_path_factory.mktemp("faults_prediction")
    with pytest.MonkeyPatch.context() as mp:
        find_our_trainers(mp)
        env = dict(os.environ)
    model = make_model_folder(root)
    images = root / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(N_CASES):
        Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(images / f"c{i:02d}_0000.png")
    ref = root / "ref"
    proc = subprocess.run(predict_cmd(model, images, ref), env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return model, images, ref, env


def predict_cmd(model, images, out, *extra):
    return [str(Path(sys.executable).parent / "nnUNetv2_predict_text"), "-i", str(images), "-o", str(out), "-m",
            str(model), "-f", "0", "-device", "cpu", "-prompts", "lesion", "marker", "--save_binary",
            "--disable_progress_bar", "-npp", "1", "-nps", "1", *extra]


def outputs(folder: Path):
    return sorted(p.name for p in Path(folder).iterdir() if not p.name.startswith("."))


def same_as_reference(folder: Path, ref: Path) -> int:
    """Every output under its final name equals the reference's; returns how many there are."""
    names = outputs(folder)
    for name in names:
        assert (ref / name).exists(), f"{name}: not an output of the reference run"
        if name.endswith(".png"):
            assert np.array_equal(np.asarray(Image.open(folder / name)), np.asarray(Image.open(ref / name))), name
        elif name.endswith(".json"):
            a, b = json.loads((folder / name).read_text()), json.loads((ref / name).read_text())
            assert a.get("prompts") == b.get("prompts"), name
    return len(names)


def test_prediction_killed_at_random_points(prediction_setup, tmp_path):
    model, images, ref, env = prediction_setup
    total = len(outputs(ref))
    for point in range(3):
        out = tmp_path / f"out{point}"
        stop_after = RNG.randint(1, total - 4)
        proc = spawn(predict_cmd(model, images, out), env)
        wait_until(lambda: out.is_dir() and len(outputs(out)) >= stop_after, proc, "outputs appeared")
        time.sleep(RNG.uniform(0, 0.3))
        kill(proc)
        n = same_as_reference(out, ref)
        left = temps(out)
        again = subprocess.run(predict_cmd(model, images, out, "--continue_prediction"), env=env,
                               capture_output=True, text=True, timeout=600)
        assert again.returncode == 0, again.stderr[-2000:]
        assert same_as_reference(out, ref) == total and temps(out) == []
        record("prediction (nnUNetv2_predict_text)", f"kill -9 after >= {stop_after} of {total} files + a random "
               f"0-0.3 s", f"{n} complete files, each equal to an undisturbed run's; {len(left)} temporary file(s); "
               f"--continue_prediction finished and removed them", "old or new, never a mix")


def test_concurrent_predictions_into_one_folder(prediction_setup, tmp_path):
    model, images, ref, env = prediction_setup
    out = tmp_path / "shared"
    procs = [spawn(predict_cmd(model, images, out), env) for _ in range(2)]
    codes = [p.wait(timeout=600) for p in procs]
    errors = [p.stderr.read() for p in procs]
    assert codes == [0, 0], errors
    assert same_as_reference(out, ref) == len(outputs(ref)) and temps(out) == []
    record("two predictions into one folder at once", "same inputs and prompts, started together",
           "both exit 0; every file whole and equal to an undisturbed run's; no temporary file left",
           "new, never a mix")


def _mount_tmpfs(path: Path, size: str) -> None:
    path.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True,
                       text=True, timeout=60)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({r.stderr.strip()}): the disk faults need root")


def _umount(path: Path) -> None:
    subprocess.run(["umount", str(path)], capture_output=True, timeout=60)


def _one_line_error(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr[-3000:]
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    assert lines, "no message"
    return lines[-1][:160]


def test_read_only_output_folder(prediction_setup, tmp_path):
    model, images, ref, env = prediction_setup
    out = tmp_path / "ro"
    _mount_tmpfs(out, "4m")
    try:
        for name in outputs(ref)[:3]:
            shutil.copy(ref / name, out / name)
        before = {n: (out / n).read_bytes() for n in outputs(out)}
        r = subprocess.run(["mount", "-o", "remount,ro", str(out)], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        proc = subprocess.run(predict_cmd(model, images, out), env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode != 0
        message = _one_line_error(proc.stderr)
        assert str(out) in proc.stderr and ("read-only" in proc.stderr.lower() or "permission" in proc.stderr.lower())
        assert {n: (out / n).read_bytes() for n in outputs(out)} == before and temps(out) == []
    finally:
        _umount(out)
    record("read-only output folder", "prediction into a read-only mount holding 3 earlier outputs",
           f"exit {proc.returncode}: `{message}`; the 3 files unchanged, nothing else written", "old, clear message")


def test_full_disk_during_prediction(prediction_setup, tmp_path):
    model, images, ref, env = prediction_setup
    out = tmp_path / "full"
    _mount_tmpfs(out, "48k")
    try:
        proc = subprocess.run(predict_cmd(model, images, out), env=env, capture_output=True, text=True, timeout=600)
        n = same_as_reference(out, ref)
        left = temps(out)
        assert proc.returncode == 2, f"the small disk was expected to fill up: {proc.stderr[-2000:]}"
        message = _one_line_error(proc.stderr)   # no traceback, from the command nor from nnU-Net's workers
        last = proc.stderr.strip().splitlines()[-1]
        assert last.startswith(f"nnUNetv2_predict_text: error: cannot write {out}")
        assert "No space left on device" in last and last.endswith("rerun with --continue_prediction)")
        assert left == []
    finally:
        _umount(out)
    record("full disk (48 KiB tmpfs) during prediction", f"{len(outputs(ref))} outputs do not fit",
           f"exit {proc.returncode}: `{message}`; {n} complete files, no partial or temporary file",
           "old or new per file, clear message")


# ---------------------------------------------------------------- conversion
def _nifti_folder(root: Path, n: int) -> Path:
    import SimpleITK as sitk

    src = root / "src"
    (src / "images").mkdir(parents=True)
    (src / "labels").mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        img = sitk.GetImageFromArray(rng.normal(0, 1, (24, 48, 48)).astype(np.float32))
        lab = np.zeros((24, 48, 48), np.uint8)
        lab[8:16, 10:30, 10:30] = 1
        lab_img = sitk.GetImageFromArray(lab)
        for im in (img, lab_img):
            im.SetSpacing((0.8, 0.8, 3.0))
        sitk.WriteImage(img, str(src / "images" / f"case{i:02d}.nii.gz"))
        sitk.WriteImage(lab_img, str(src / "labels" / f"case{i:02d}.nii.gz"))
    (root / "names.json").write_text(json.dumps({"1": "lesion"}))
    return src


def test_conversion_killed_at_random_points(tmp_path):
    src = _nifti_folder(tmp_path, 24)
    raw = tmp_path / "raw"
    env = dict(os.environ, nnUNet_raw=str(raw))
    cmd = [sys.executable, "-m", "dataset_conversion.folder", "-i", str(src), "--names", str(tmp_path / "names.json"),
           "-d", "880", "--name", "Faults"]
    final = raw / "Dataset880_Faults"
    for point in range(2):
        stop_after = RNG.randint(1, 20)
        proc = spawn(cmd, env)
        staged = lambda: [p for s in raw.glob(".Dataset880_Faults.partial-*") for p in s.rglob("*.nii.gz")]  # noqa: E731
        wait_until(lambda: len(staged()) >= stop_after or final.exists(), proc, "the conversion wrote cases")
        time.sleep(RNG.uniform(0, 0.3))
        kill(proc)
        state = "absent"
        if final.exists():
            dj = json.loads((final / "dataset.json").read_text())
            assert dj["numTraining"] == 24 and len(list((final / "imagesTr").glob("*.nii.gz"))) == 24
            state = "complete (24 cases)"
        partial = list(raw.glob(".Dataset880_Faults.partial-*"))
        again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
        if state == "absent":
            assert again.returncode == 0, again.stderr[-2000:]
        assert len(list((final / "imagesTr").glob("*.nii.gz"))) == 24
        assert not list(raw.glob(".Dataset880_Faults.*"))
        shutil.rmtree(final)
        record("conversion (convert folder, 24 NIfTI cases)", f"kill -9 after >= {stop_after} staged files + a "
               f"random 0-0.3 s", f"final folder {state}; {len(partial)} staging folder(s), removed by the next run, "
               f"which published all 24", "old or new, never a mix")


def test_synth_overwrite_killed_at_random_points(tmp_path):
    raw = tmp_path / "raw"
    env = dict(os.environ, nnUNet_raw=str(raw))
    base = [sys.executable, "-m", "nnunet_causal.cli", "synth", "endoscopy2d", "-d", "881", "--size", "48", "48"]
    first = subprocess.run(base + ["-n", "2"], env=env, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-2000:]
    final = raw / "Dataset881_SynthEndoscopy"
    old = sorted(p.relative_to(final) for p in final.rglob("*"))
    proc = spawn(base + ["-n", "30", "--overwrite"], env)
    wait_until(lambda: any(raw.glob(".tmp_Dataset881*/imagesTr/*.png")), proc, "the new dataset was being written")
    time.sleep(RNG.uniform(0, 1.0))
    kill(proc)
    now = sorted(p.relative_to(final) for p in final.rglob("*")) if final.exists() else None
    if now is None:
        found = "between the renames: the old dataset in the backup"
    else:
        assert now == old or json.loads((final / "dataset.json").read_text())["numTraining"] >= 30
        found = "the old dataset, whole" if now == old else "the new dataset, whole"
    again = subprocess.run(base + ["-n", "2"], env=env, capture_output=True, text=True, timeout=600)
    assert "--overwrite" in again.stderr and "Traceback" not in again.stderr   # it is back under its name
    assert not [p for p in raw.iterdir() if p.name.startswith((".tmp_", ".old_"))]
    record("synth --overwrite (replace a dataset)", "kill -9 while the new dataset is written + a random 0-1 s",
           f"{found}; leftovers removed by the next run", "old or new, never a mix")
