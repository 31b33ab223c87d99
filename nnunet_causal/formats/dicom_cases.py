"""DICOM at the edges of the prediction commands: a folder of DICOM series in as nnU-Net cases, DICOM-SEG /
RTSTRUCT out beside each case's label map.

In: :func:`stage_dicom_cases` reads every series of a folder (:mod:`.dicom_series`: one case per
SeriesInstanceUID, checked geometry) and writes each as ``<work>/<case>_0000<ending>`` (case id
``S_<SeriesInstanceUID with '_' for '.'>``), checking that the written file reads back on the series'
grid; :data:`SERIES_RECORD` (``dicom_series.json``, written beside the outputs) maps each case to its
series (UIDs, files, grid).

Out: :func:`write_case_dicom` reads a case's label map and its ``CASE.prompts.json`` back (the binary
mask files of ``--save_binary`` when present, so overlapping prompts stay overlapping), checks that the
label map lies on the series' grid, and writes ``CASE.seg.dcm`` (DICOM-SEG) and/or ``CASE.rtstruct.dcm``
(RTSTRUCT), both referencing the source series.
"""
from __future__ import annotations

import functools
import json
import logging
import re
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

from nnunet_causal.files import atomic_path, write_json_atomic
from nnunet_causal.errors import DatasetError
from nnunet_causal.formats.dicom_series import (DicomSeries, is_dicom_folder, read_series_headers, read_series_image,
                                                scan_dicom_folder)
from nnunet_causal.formats.geometry import Grid, check_same_grid, grid_differences
from nnunet_causal.formats.segments import dicom_text

logger = logging.getLogger(__name__)

SERIES_RECORD = "dicom_series.json"
_NNUNET_IMAGE = re.compile(r"_\d{4}\.")
DICOM_OUTPUTS = {"seg": ("seg",), "rtstruct": ("rtstruct",), "both": ("seg", "rtstruct")}
#: a file written through NIfTI stores its geometry in float32: agreement asked of it, mm
WRITTEN_GRID_TOLERANCE = 1e-4


def looks_like_dicom_input(folder: Path) -> bool:
    """``folder`` holds DICOM files and no nnU-Net named image (``CASE_0000.ext``, not DICOM) at its top level."""
    from pydicom.misc import is_dicom

    folder = Path(folder)
    if not folder.is_dir() or any(p.is_file() and _NNUNET_IMAGE.search(p.name) and not is_dicom(p)
                                  for p in folder.iterdir()):
        return False
    return is_dicom_folder(folder)


def stage_dicom_cases(input_folder: Path, work_folder: Path, file_ending: str) -> Dict[str, DicomSeries]:
    """Write every series under ``input_folder`` as an nnU-Net case in ``work_folder``; ``{case: series}``."""
    import SimpleITK as sitk

    series = scan_dicom_folder(Path(input_folder))
    work_folder = Path(work_folder)
    work_folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for s in series:
        path = work_folder / f"{s.case_id}_0000{file_ending}"
        with atomic_path(path) as tmp:
            sitk.WriteImage(read_series_image(s), tmp, True)
        check_same_grid(s.grid, Grid.of(sitk.ReadImage(str(path))), str(path), f"series {s.series_uid}",
                        WRITTEN_GRID_TOLERANCE)
        out[s.case_id] = s
        logger.info("DICOM series %s (%s, %d slices) -> case %s", s.series_uid, s.modality, len(s.files), s.case_id)
    return out


def write_series_record(output_folder: Path, cases: Dict[str, DicomSeries]) -> Path:
    """``output_folder/dicom_series.json``: ``{case: series record}`` (merged with an existing record)."""
    path = Path(output_folder) / SERIES_RECORD
    record = {}
    if path.is_file():
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            record = {}
    record.update({case: s.record() for case, s in cases.items()})
    write_json_atomic(path, record)
    return path


def series_of_case(output_folder: Path, case: str) -> Optional[DicomSeries]:
    """The source series of ``case`` from ``output_folder/dicom_series.json`` (None if not a DICOM case)."""
    path = Path(output_folder) / SERIES_RECORD
    if not path.is_file():
        return None
    rec = json.loads(path.read_text(encoding="utf-8")).get(case)
    if rec is None:
        return None
    grid = Grid(tuple(rec["size"]), tuple(rec["spacing"]), tuple(rec["origin"]), tuple(rec["direction"]))
    return DicomSeries(Path(rec["folder"]), rec["series_instance_uid"], rec["study_instance_uid"],
                       rec["frame_of_reference_uid"], rec["modality"], rec["series_description"],
                       tuple(Path(f) for f in rec["files"]), grid)


def _case_masks(label_path: Path, sidecar: dict, series: DicomSeries) -> list:
    import SimpleITK as sitk
    import numpy as np

    from nnunet_causal.formats.segments import PromptMask, prompt_masks

    label = sitk.ReadImage(str(label_path))
    check_same_grid(series.grid, Grid.of(label), str(label_path), f"DICOM series {series.series_uid}",
                    WRITTEN_GRID_TOLERANCE)
    masks = prompt_masks(sitk.GetArrayFromImage(label), sidecar["prompts"])
    out = []
    for m, rec in zip(masks, sidecar["prompts"]):
        binary = rec.get("binary_mask")
        if binary and (label_path.parent / binary).is_file():
            arr = sitk.GetArrayFromImage(sitk.ReadImage(str(label_path.parent / binary))) > 0
            m = PromptMask(m.label_value, m.prompt, m.structures, np.asarray(arr))
        out.append(m)
    return out


def write_case_dicom(label_path: Path, sidecar_path: Path, series: DicomSeries, kinds: Sequence[str],
                     series_description: str = "nnunet_causal text-prompted segmentation",
                     edits_path: Optional[Path] = None) -> List[Path]:
    """Write ``CASE.seg.dcm`` and/or ``CASE.rtstruct.dcm`` beside ``label_path`` (``kinds``: 'seg',
    'rtstruct'); return the files written. ``edits_path``: an edited result's ``CASE.edits.json``, stored
    in the objects' private block (:func:`~nnunet_causal.formats.segments.add_edit_history`) and summed up
    in their series description."""
    label_path, sidecar_path = Path(label_path), Path(sidecar_path)
    history = None
    if edits_path is not None:
        from nnunet_causal.formats.segments import edited_description

        try:
            history = json.loads(Path(edits_path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise DatasetError(f"{edits_path}: cannot read the edit log: {e}") from e
        series_description = edited_description(history)
    try:
        sidecar = json.loads(sidecar_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise DatasetError(f"{sidecar_path}: cannot read the case's prompt records: {e}") from e
    masks = _case_masks(label_path, sidecar, series)
    source = read_series_headers(series)
    case = sidecar.get("case") or label_path.name.split(".")[0]
    written = []
    if "seg" in kinds:
        from nnunet_causal.formats.dicom_seg import write_dicom_seg

        written.append(write_dicom_seg(masks, source, label_path.parent / f"{case}.seg.dcm",
                                       series_description=series_description, edit_history=history))
    if "rtstruct" in kinds:
        from nnunet_causal.formats.rtstruct import write_rtstruct

        written.append(write_rtstruct(masks, source, label_path.parent / f"{case}.rtstruct.dcm",
                                      series_description=series_description, edit_history=history))
    return written


def check_dicom_request(input_folder: Path, save_dicom: Optional[str], reference: bool = False) -> bool:
    """Whether ``input_folder`` is a folder of DICOM series; refuse ``save_dicom`` ('seg', 'rtstruct',
    'both') without DICOM input unless a ``reference`` series is to be generated (and a reference with DICOM
    input), and DICOM-SEG without highdicom, before any work is done."""
    is_dicom = looks_like_dicom_input(Path(input_folder))
    if reference and (is_dicom or not save_dicom):
        raise DatasetError("--dicom_reference generates a DICOM series for NIfTI / NRRD / MHA input and needs "
                           "--save_dicom" + ("; this input is DICOM already" if is_dicom else ""))
    if save_dicom:
        if save_dicom not in DICOM_OUTPUTS:
            raise DatasetError(f"--save_dicom must be one of {sorted(DICOM_OUTPUTS)}, got '{save_dicom}'")
        if not is_dicom and not reference:
            raise DatasetError(f"--save_dicom needs a folder of DICOM series as input; {input_folder} holds none "
                               f"(DICOM-SEG and RTSTRUCT must reference the images they segment; --dicom_reference "
                               f"writes a CT series from each image to reference)")
        if "seg" in DICOM_OUTPUTS[save_dicom]:
            from nnunet_causal.formats.dicom_seg import require_highdicom

            require_highdicom()
    return is_dicom


@contextmanager
def dicom_input(input_folder: Path, file_ending: str, output_folder: Path) -> Iterator[Tuple[str, dict]]:
    """``(folder to predict from, {case: DicomSeries})``: ``input_folder`` itself when it is not a DICOM
    folder, else a temporary folder of staged cases (deleted on leaving) and the series record written to
    ``output_folder``."""
    if not looks_like_dicom_input(Path(input_folder)):
        yield str(input_folder), {}
        return
    with tempfile.TemporaryDirectory(prefix="nnunet_causal_dicom_") as tmp:
        cases = stage_dicom_cases(Path(input_folder), Path(tmp), file_ending)
        Path(output_folder).mkdir(parents=True, exist_ok=True)
        write_series_record(Path(output_folder), cases)
        yield tmp, cases


def write_dicom_outputs(output_folder: Path, file_ending: str, cases: Dict[str, DicomSeries], save_dicom: str,
                        series_description: str = "nnunet_causal text-prompted segmentation",
                        reference_from: Optional[Path] = None, channel_names: Optional[dict] = None) -> List[Path]:
    """DICOM-SEG / RTSTRUCT for every case of ``cases`` whose label map is in ``output_folder``; with
    ``reference_from`` (a NIfTI / NRRD / MHA input folder) for its cases, each referencing a generated
    series (:func:`reference_series`)."""
    if reference_from is not None:
        cases = {**cases, **reference_series(Path(reference_from), Path(output_folder), file_ending, channel_names)}
    written = []
    for case, series in cases.items():
        label = Path(output_folder) / f"{case}{file_ending}"
        if not label.is_file():
            continue  # predicted by another part (-num_parts) or not at all
        written += write_case_dicom(label, Path(output_folder) / f"{case}.prompts.json", series,
                                    DICOM_OUTPUTS[save_dicom], series_description)
    return written


@contextmanager
def dicom_case_input(inputs: Sequence[str], model_folder: Path,
                     save_dicom: Optional[str] = None) -> Iterator[Tuple[List[str], Optional[DicomSeries]]]:
    """For commands that take one case's channel files (``nnunet_causal intervene``, the viewer):
    ``(inputs, None)`` unless ``inputs`` is one folder holding one DICOM series, then ``([staged file],
    series)`` with the series written as ``<tmp>/<case>_0000<ending>`` (the ending from
    ``model_folder/dataset.json``), the temporary folder deleted on leaving. ``save_dicom`` without a DICOM
    input is refused (as :func:`check_dicom_request`)."""
    if len(inputs) != 1 or not looks_like_dicom_input(Path(inputs[0])):
        if save_dicom:
            raise DatasetError(f"--save_dicom needs one folder holding a DICOM series as input, got "
                               f"{', '.join(map(str, inputs))}")
        yield list(inputs), None
        return
    check_dicom_request(Path(inputs[0]), save_dicom)
    try:
        ending = json.loads((Path(model_folder) / "dataset.json").read_text(encoding="utf-8"))["file_ending"]
    except (OSError, ValueError, KeyError) as e:
        raise DatasetError(f"{model_folder}/dataset.json: cannot read the model's file ending: {e}") from e
    series = scan_dicom_folder(Path(inputs[0]))
    if len(series) != 1:
        raise DatasetError(f"{inputs[0]}: holds {len(series)} DICOM series; give the folder of one series")
    with tempfile.TemporaryDirectory(prefix="nnunet_causal_dicom_") as tmp:
        cases = stage_dicom_cases(Path(inputs[0]), Path(tmp), ending)
        [(case, s)] = cases.items()
        yield [str(Path(tmp) / f"{case}_0000{ending}")], s


@functools.lru_cache(maxsize=16)
def _staged_for_process(folder: str, file_ending: str, modified: float) -> tempfile.TemporaryDirectory:
    tmp = tempfile.TemporaryDirectory(prefix="nnunet_causal_dicom_")  # removed when the process ends
    cases = stage_dicom_cases(Path(folder), Path(tmp.name), file_ending)
    write_series_record(Path(tmp.name), cases)
    return tmp


def staged_dicom_folder(folder: Path, file_ending: str) -> Path:
    """``folder`` itself, or, when it holds DICOM series, a folder of their staged cases (one per series,
    :func:`stage_dicom_cases`, with ``dicom_series.json``) that lives as long as the process; staged once
    per folder and modification time (for the viewer, which lists its cases more than once)."""
    folder = Path(folder)
    if not looks_like_dicom_input(folder):
        return folder
    return Path(_staged_for_process(str(folder.resolve()), file_ending, folder.stat().st_mtime).name)


def reference_series(input_folder: Path, output_folder: Path, file_ending: str,
                     channel_names: Optional[dict] = None) -> Dict[str, DicomSeries]:
    """For each predicted case (``output_folder/CASE<ending>`` exists) of ``input_folder``: its first channel
    written as a DICOM CT series in ``output_folder/CASE_dicom/`` (:func:`~.dicom_write.write_ct_series`,
    new study and series UIDs, anonymous patient), checked to read back on the image's grid.

    Only CT is generated (a CT Image IOD would misdescribe other modalities): ``channel_names`` (the model's
    dataset.json) must name channel 0 "CT"."""
    import SimpleITK as sitk

    from nnunet_causal.formats.dicom_write import write_ct_series

    first = str((channel_names or {}).get("0", "")).strip()
    if first.upper() != "CT":
        raise DatasetError(f"--dicom_reference writes CT series only; this model's channel 0 is '{first or '?'}'")
    out = {}
    for image_path in sorted(Path(input_folder).glob(f"*_0000{file_ending}")):
        case = image_path.name[: -len(f"_0000{file_ending}")]
        if not (Path(output_folder) / f"{case}{file_ending}").is_file():
            continue
        image = sitk.ReadImage(str(image_path))
        folder = Path(output_folder) / f"{case}_dicom"
        if folder.exists():
            shutil.rmtree(folder)
        write_ct_series(image, folder, series_description=dicom_text(f"reference for {image_path.name}"))
        [series] = scan_dicom_folder(folder)
        diff = grid_differences(Grid.of(image), series.grid, WRITTEN_GRID_TOLERANCE)
        if diff:
            raise DatasetError(f"{folder}: the generated series is not on the grid of {image_path}: {'; '.join(diff)}")
        out[case] = series
    return out
