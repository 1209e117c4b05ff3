"""Face blur measured on the real clip: every detected face in the overlay is blurred, the rest stays sharp.

Sharpness is the variance of the Laplacian of the luma, lightly smoothed first (Gaussian, sigma 1 pixel):
the overlay is x264 ``ultrafast`` without deblocking, whose pixel-level coding noise in smooth areas would
otherwise pass for detail, while a face's eyes and mouth (2-4 pixels here) keep theirs. The face region is
the test's own: a square around the visible face landmarks, 2.5 times their spread, not the blur's head box.
Pixels under the drawn skeleton (and 2 pixels around) are left out, in the source and the overlay alike.
"""

from __future__ import annotations

import base64
import itertools
import re
from collections.abc import Iterator
from pathlib import Path

import av
import cv2
import numpy as np
import polars as pl
import pytest

from bodyscript_pipeline.errors import BodyscriptError
from bodyscript_pipeline.overlay.drawing import Yuv420p, draw_skeletons_yuv420p
from bodyscript_pipeline.overlay.face_blur import FACE, SHOULDERS, blur_faces_yuv420p, head_boxes
from bodyscript_pipeline.overlay.scaling import OverlayScaler
from bodyscript_pipeline.overlay.video import OverlayEncoder, OverlayStyle, frame_at
from bodyscript_pipeline.pose.estimator import PoseOptions
from bodyscript_pipeline.pose.model import ensure_model
from bodyscript_pipeline.pose.ranges import FrameRange, run_range
from bodyscript_pipeline.settings import Settings
from bodyscript_pipeline.steps.overlays import _poses_by_frame
from bodyscript_pipeline.video.io import iter_decoded, probe_video
from resources import PipelineResource
from tests.support.demo_run import DEMO_FRAMES, DemoRun

MIN_VISIBILITY = 0.5
MIN_PIXELS = 25  # a face region mostly under the skeleton's dots is not measured (faces span 20-40 pixels)
Box = tuple[int, int, int, int]
Poses = dict[int, tuple[np.ndarray, np.ndarray]]  # frame -> (ids, people (persons, 33, 3))


def detail(luma: np.ndarray) -> np.ndarray:
    return cv2.Laplacian(cv2.GaussianBlur(luma.astype(np.float32), (0, 0), 1.0), cv2.CV_32F)


def lumas(path: Path, size: tuple[int, int] | None = None) -> Iterator[np.ndarray]:
    """Each frame's luma plane (``size``: scaled as the overlay scales its frames, by a whole factor where
    that gives the size)."""
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            width, height = size or (frame.width, frame.height)
            scaled = OverlayScaler((width, height), frame.width // width, threads=1)(frame)
            yield scaled.to_ndarray()[:height]


def face_region(person: np.ndarray, width: int, height: int) -> Box | None:
    visible = person[FACE, 2] >= MIN_VISIBILITY
    if not visible.any():
        return None
    points = person[FACE][visible, :2] * (width, height)
    low, high = points.min(axis=0), points.max(axis=0)
    centre, half = (low + high) / 2, max(1.25 * float((high - low).max()), 12.0)
    x0, y0, x1, y1 = np.clip(np.r_[np.floor(centre - half), np.ceil(centre + half)], 0, [width, height] * 2)
    return (int(x0), int(y0), int(x1), int(y1)) if x1 - x0 >= 8 and y1 - y0 >= 8 else None


def skeleton_mask(people: np.ndarray, width: int, height: int) -> np.ndarray:
    """Where the skeleton is drawn (every colour's luma is at least 16), and 3 pixels around: its edges, softened by
    the encoder, are the skeleton's, not the face's."""
    drawn = draw_skeletons_yuv420p(Yuv420p.of(np.zeros((height * 3 // 2, width), np.uint8)), people, MIN_VISIBILITY)
    return cv2.dilate(drawn.luma, np.ones((7, 7), np.uint8)) > 0


def sharpness(details: np.ndarray, box: Box, keep: np.ndarray) -> float:
    x0, y0, x1, y1 = box
    return float(details[y0:y1, x0:x1][keep[y0:y1, x0:x1]].var())


def background_region(people: np.ndarray, source: np.ndarray, side: int = 96) -> Box:
    """The most detailed square of the frame (on a grid of half its side) at least 150 pixels from every
    landmark of every person."""
    height, width = source.shape
    mean = cv2.boxFilter(source, -1, (side, side), anchor=(0, 0), borderType=cv2.BORDER_CONSTANT)
    variance = cv2.boxFilter(source * source, -1, (side, side), anchor=(0, 0), borderType=cv2.BORDER_CONSTANT) - mean**2
    ys, xs = np.mgrid[0 : height - side + 1 : side // 2, 0 : width - side + 1 : side // 2]
    points = people[:, :, :2].reshape(-1, 2) * (width, height)
    centres = np.stack([xs.ravel(), ys.ravel()], axis=1) + side / 2
    gap = np.abs(centres[:, None, :] - points[None, :, :]).max(axis=2).min(axis=1) - side / 2
    score = np.where(gap >= 150, variance[ys.ravel(), xs.ravel()], -1.0)
    x, y = int(xs.ravel()[score.argmax()]), int(ys.ravel()[score.argmax()])
    return x, y, x + side, y + side


def sharpness_ratios(
    overlay: Path, source: Path, poses: Poses, face_poses: Poses | None = None
) -> tuple[dict[int, float], dict[int, float]]:
    """Per frame with a measurable face: the face region's sharpness in the overlay over the source's, and
    the same for a detailed region away from people. ``face_poses`` place the face region where the drawn
    ``poses`` hide the face landmarks."""
    face_poses = face_poses or poses
    faces: dict[int, float] = {}
    backgrounds: dict[int, float] = {}
    frames = lumas(overlay)
    first = next(frames)
    height, width = first.shape
    pairs = zip(itertools.chain([first], frames), lumas(source, (width, height)), strict=True)
    for number, (drawn, original) in enumerate(pairs):
        if number not in poses:
            continue
        people = poses[number][1]
        keep = ~skeleton_mask(people, width, height)
        drawn_detail, source_detail = detail(drawn), detail(original)
        face = face_region(face_poses[number][1][0], width, height)
        if face is not None and keep[face[1] : face[3], face[0] : face[2]].sum() >= MIN_PIXELS:
            faces[number] = sharpness(drawn_detail, face, keep) / sharpness(source_detail, face, keep)
        background = background_region(people, source_detail)
        backgrounds[number] = sharpness(drawn_detail, background, keep) / sharpness(source_detail, background, keep)
    return faces, backgrounds


def demo_poses(demo_run: DemoRun) -> Poses:
    return {i: (ids, people) for i, ids, people in _poses_by_frame(demo_run.lake.table_part("landmarks"))}


def draw_overlay(source: Path, poses: Poses, style: OverlayStyle, target: Path) -> Path:
    """The overlay of ``source`` with ``poses`` drawn in ``style``, as the pose workers and the overlay step
    draw it (every frame, one segment)."""
    probe, index = probe_video(source)
    nobody = (np.empty(0, np.uint16), np.empty((0, 33, 3), np.float32))
    with OverlayEncoder(target, probe, style, threads=1) as encoder:
        for number, pts, frame in iter_decoded(source, index):
            ids, people = poses.get(number, nobody)
            encoder.add(frame, pts, people, ids)
    return target


def face_frames(poses: Poses) -> int:
    return sum((people[0, FACE, 2] >= MIN_VISIBILITY).any() for _, people in poses.values())


def test_every_detected_face_is_blurred_in_the_overlay_and_the_rest_stays_sharp(
    demo_run: DemoRun, demo_video: Path
) -> None:
    """The pipeline's own overlay (blur on by default, drawn by the pose workers beside inference)."""
    poses = demo_poses(demo_run)
    faces, backgrounds = sharpness_ratios(demo_run.path(demo_run.lake.overlay), demo_video, poses)

    assert face_frames(poses) >= 200, "the clip shows a face in most frames"
    assert len(faces) >= 0.9 * face_frames(poses), "nearly every face is measured, not hidden by the skeleton"
    worst = max(faces, key=faces.__getitem__)
    assert faces[worst] < 0.25, f"frame {worst}: the face keeps {faces[worst]:.0%} of its sharpness"
    assert np.median(list(faces.values())) < 0.05
    assert len(backgrounds) == len(poses)
    assert min(backgrounds.values()) > 0.7 and max(backgrounds.values()) < 1.5, "away from people: as sharp"
    assert np.median(list(backgrounds.values())) == pytest.approx(1.0, abs=0.15)


def test_with_the_setting_off_faces_stay_sharp(demo_run: DemoRun, demo_video: Path, tmp_path: Path) -> None:
    settings = Settings.from_env({"BODYSCRIPT_HOME": str(tmp_path), "BODYSCRIPT_BLUR_FACES": "false"})
    style = PipelineResource(settings).overlay_style
    assert not style.blur_faces
    poses = demo_poses(demo_run)

    faces, _ = sharpness_ratios(draw_overlay(demo_video, poses, style, tmp_path / "sharp.mp4"), demo_video, poses)

    assert len(faces) >= 0.9 * face_frames(poses)
    assert min(faces.values()) > 0.5 and np.median(list(faces.values())) > 0.8


def test_a_head_whose_face_landmarks_are_invisible_is_blurred_from_the_shoulders(
    demo_run: DemoRun, demo_video: Path, tmp_path: Path
) -> None:
    """The real landmarks with the face's visibility lowered below the threshold: the head box comes from
    the shoulders alone, and still covers the face where the model had found it."""
    poses = demo_poses(demo_run)
    faceless = {}
    for number, (ids, people) in poses.items():
        people = people.copy()
        people[:, FACE, 2] = 0.1
        faceless[number] = (ids, people)
    width, height = 884, 496  # the overlay's size
    shoulders = [n for n, (_, people) in faceless.items() if (people[0, SHOULDERS, 2] >= MIN_VISIBILITY).all()]
    assert len(shoulders) >= 0.95 * len(faceless)
    for number in shoulders:
        people = faceless[number][1]
        face = poses[number][1][0, FACE, :2] * (width, height)
        low, high = face.min(axis=0), face.max(axis=0)
        margin = 0.25 * (high - low).max()  # the face landmarks with a quarter of their spread around them
        (left, top), (right, bottom) = np.clip([low - margin, high + margin], 0, (width, height))
        x0, y0, x1, y1 = head_boxes(people, width, height, MIN_VISIBILITY)[0]
        assert x0 <= left and y0 <= top and right <= x1 and bottom <= y1, number

    overlay = draw_overlay(demo_video, faceless, OverlayStyle(), tmp_path / "faceless.mp4")
    faces, _ = sharpness_ratios(overlay, demo_video, faceless, face_poses=poses)

    assert len(faces) >= 0.95 * face_frames(poses), "no face dots drawn: the face is measurable"
    worst = max(faces, key=faces.__getitem__)
    assert faces[worst] < 0.25, f"frame {worst}: the face keeps {faces[worst]:.0%} of its sharpness"
    assert np.median(list(faces.values())) < 0.05


def test_a_person_without_visible_face_or_shoulders_gets_the_models_guess_of_the_face(demo_run: DemoRun) -> None:
    (number, (_, people)) = next((n, p) for n, p in demo_poses(demo_run).items() if n >= 60)
    face = face_region(people[0], 1280, 720)
    assert face is not None
    hidden = people.copy()
    hidden[:, :25, 2] = 0.0  # face, shoulders, arms and hips invisible: only the legs are seen

    x0, y0, x1, y1 = head_boxes(hidden, 1280, 720, MIN_VISIBILITY)[0]

    centre = ((face[0] + face[2]) / 2, (face[1] + face[3]) / 2)
    assert x0 < centre[0] < x1 and y0 < centre[1] < y1, number


def test_blur_changes_only_the_head_box(demo_run: DemoRun, demo_video: Path) -> None:
    """On a real frame's yuv420p planes at the source's size: every changed pixel lies in the head box (in
    chroma, the box at half size), and the box's own detail is gone."""
    number, (_, people) = next((n, p) for n, p in demo_poses(demo_run).items() if n >= 40)
    with av.open(str(demo_video)) as container:
        frame = next(f for k, f in enumerate(container.decode(video=0)) if k == number)
    planes = frame.reformat(format="yuv420p").to_ndarray()
    before = planes.copy()
    height, width = frame.height, frame.width

    (box,) = blur_faces_yuv420p(Yuv420p.of(planes), people, MIN_VISIBILITY)

    x0, y0, x1, y1 = (int(v) for v in box)
    assert 60 < x1 - x0 < 150 and 60 < y1 - y0 < 150, "a head-sized box at 1768 x 994"
    inside = np.zeros((height, width), bool)
    inside[y0:y1, x0:x1] = True
    changed = planes[:height] != before[:height]
    assert changed.any() and not (changed & ~inside).any()
    chroma_inside = np.zeros((height // 2, width // 2), bool)
    chroma_inside[y0 // 2 : -(-y1 // 2), x0 // 2 : -(-x1 // 2)] = True
    after, original = (p[height:].reshape(2, height // 2, width // 2) for p in (planes, before))
    assert (after != original).any() and not ((after != original) & ~chroma_inside).any()
    everywhere = np.ones((height, width), bool)
    interior = (x0 + 4, y0 + 4, x1 - 4, y1 - 4)  # the smoothed Laplacian reaches 4 pixels across the box's edge
    blurred, sharp = (sharpness(detail(p[:height]), interior, everywhere) for p in (planes, before))
    assert blurred < 0.05 * sharp


def test_landmarks_are_the_same_with_blur_on_and_off(
    bodyscript_home: Settings, demo_video: Path, tmp_path: Path
) -> None:
    """Blur touches only what is drawn: the pose worker's rows are identical, its overlay segment is not."""
    probe, index = probe_video(demo_video)
    model = ensure_model(bodyscript_home)
    frame_range = FrameRange(0, 60, 100)
    outputs = {}
    for blur in (True, False):
        out = tmp_path / f"blur-{blur}.parquet"
        style = OverlayStyle(max_resolution=0, blur_faces=blur)  # drawn on the decoded frame's own planes
        result = run_range(demo_video, probe, index, model.path, frame_range, out, PoseOptions(), style)
        assert result.segment is not None and result.detected > 30
        outputs[blur] = (pl.read_parquet(out), result.segment)

    assert outputs[True][0].equals(outputs[False][0])
    blurred, sharp = (lumas(outputs[blur][1]) for blur in (True, False))
    assert any(not np.array_equal(a, b) for a, b in zip(blurred, sharp, strict=True))


def test_overlay_metadata_shows_the_thumbnail_and_whether_faces_were_blurred(demo_run: DemoRun) -> None:
    meta = demo_run.metadata("overlays")
    assert meta["faces_blurred"] is True

    overlay = demo_run.path(demo_run.lake.overlay)
    assert meta["overlay_url"] == overlay.as_uri()
    assert meta["uri"] == str(overlay)
    shown = re.fullmatch(
        r"\[!\[overlay thumbnail\]\(data:image/jpeg;base64,([A-Za-z0-9+/=]+)\)\]\((.+?)\)\n\n"
        r"\[Open the overlay video\]\(\2\)",
        meta["thumbnail"],
    )
    assert shown is not None, meta["thumbnail"][:200]
    encoded, link = shown.groups()
    assert link == overlay.as_uri(), "the thumbnail and the link open the overlay"
    jpeg = base64.b64decode(encoded)
    assert jpeg == demo_run.path(demo_run.lake.thumbnail).read_bytes()
    thumbnail = cv2.cvtColor(cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    assert thumbnail.shape == (269, 480, 3), "the 884 x 496 overlay's long side at 480"
    middle = DEMO_FRAMES // 2
    errors = {
        k: np.abs(
            thumbnail.astype(int) - cv2.resize(frame_at(overlay, k), (480, 269), interpolation=cv2.INTER_AREA)
        ).mean()
        for k in (0, middle - 1, middle, middle + 1)
    }
    assert min(errors, key=errors.__getitem__) == middle, f"the (blurred) overlay's middle frame: {errors}"
    assert errors[middle] < 5, "JPEG's loss only"


@pytest.mark.parametrize(("value", "expected"), [(None, True), ("", True), ("false", False), ("0", False),
                                                 ("off", False), ("true", True), ("YES", True)])  # fmt: skip
def test_blur_faces_setting(value: str | None, expected: bool, tmp_path: Path) -> None:
    env = {"BODYSCRIPT_HOME": str(tmp_path)} | ({} if value is None else {"BODYSCRIPT_BLUR_FACES": value})
    settings = Settings.from_env(env)
    assert settings.blur_faces is expected
    assert PipelineResource(settings).overlay_style.blur_faces is expected


def test_blur_faces_setting_refuses_other_values(tmp_path: Path) -> None:
    with pytest.raises(BodyscriptError, match=r"^BODYSCRIPT_BLUR_FACES='maybe': use true or false"):
        Settings.from_env({"BODYSCRIPT_HOME": str(tmp_path), "BODYSCRIPT_BLUR_FACES": "maybe"})
