"""Generate test clips with PyAV from real face photos, with real (synthesised) audio tracks.

Nothing here uses likeness's own video code, so tests compare it against an independent writer.
Clips are small (320×240, a few seconds) unless a test asks otherwise; all go under pytest's tmp.
"""

from __future__ import annotations

import importlib.util
import shutil
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

# Photos used: A is in the frame from the start, B walks in later.
PERSON_A = "obama/1.jpg"
PERSON_B = "biden/2.jpg"


def load_rgb(path: Path) -> np.ndarray:
    from likeness.media.image import load_image

    return load_image(path).pixels


def face_box(pixels: np.ndarray) -> tuple[int, int, int, int]:
    """The largest HOG face box (left, top, right, bottom) in a photo — to frame crops around it."""
    import dlib

    detector = dlib.get_frontal_face_detector()
    rects = detector(np.ascontiguousarray(pixels), 0)
    if not rects:
        raise AssertionError("test photo without a detectable face")
    rect = max(rects, key=lambda r: r.width() * r.height())
    return (rect.left(), rect.top(), rect.right(), rect.bottom())


def crop_around(pixels: np.ndarray, box: tuple[int, int, int, int], margin: float) -> np.ndarray:
    """A square crop centred on ``box``, ``margin`` × the box size on each side (clipped to the photo)."""
    left, top, right, bottom = box
    side = int(max(right - left, bottom - top) * (1 + 2 * margin))
    cx, cy = (left + right) // 2, (top + bottom) // 2
    x0 = max(0, min(pixels.shape[1] - side, cx - side // 2))
    y0 = max(0, min(pixels.shape[0] - side, cy - side // 2))
    return pixels[y0 : y0 + side, x0 : x0 + side]


def resize(pixels: np.ndarray, width: int, height: int) -> np.ndarray:
    import cv2

    return cv2.resize(pixels, (width, height), interpolation=cv2.INTER_AREA)


def pan_frames(
    photo: np.ndarray, *, size: tuple[int, int] = (320, 240), count: int = 50
) -> Iterator[np.ndarray]:
    """A window panning left→right and zooming in slightly over ``photo`` (the face stays in view)."""
    width, height = size
    ph, pw = photo.shape[:2]
    aspect = width / height
    for i in range(count):
        t = i / max(1, count - 1)
        win_w = int(min(pw, ph * aspect) * (0.95 - 0.15 * t))
        win_h = int(win_w / aspect)
        x0 = int((pw - win_w) * (0.35 + 0.3 * t))
        y0 = int((ph - win_h) * 0.3)
        yield resize(photo[y0 : y0 + win_h, x0 : x0 + win_w], width, height)


@dataclass(frozen=True)
class Scene:
    """Two people: A from the first frame; B slides in from the right at ``b_enters``, out at ``b_leaves``."""

    a: np.ndarray
    b: np.ndarray
    size: tuple[int, int] = (480, 360)
    face_px: int = 150
    b_enters: int = 20
    b_leaves: int | None = None
    count: int = 60

    def frames(self) -> Iterator[np.ndarray]:
        width, height = self.size
        a = resize(self.a, self.face_px, self.face_px)
        b = resize(self.b, self.face_px, self.face_px)
        yy, xx = np.mgrid[0:height, 0:width]
        background = np.stack([60 + xx * 80 // width, 70 + yy * 60 // height, 90 + 0 * xx], -1).astype(
            np.uint8
        )
        for i in range(self.count):
            frame = background.copy()
            ax = 30 + i  # A drifts slowly right
            frame[100 : 100 + self.face_px, ax : ax + self.face_px] = a
            if i >= self.b_enters and (self.b_leaves is None or i < self.b_leaves):
                # B walks in from the right edge, 30 px a frame, and stops at x = 290 (fully in view from +5)
                bx = max(290, width - (i - self.b_enters) * 30)
                visible = min(self.face_px, width - bx)
                if visible > 0:
                    frame[90 : 90 + self.face_px, bx : bx + visible] = b[:, :visible]
            yield frame


def scene_photos(faces_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    a = load_rgb(faces_dir / PERSON_A)
    b = load_rgb(faces_dir / PERSON_B)
    return crop_around(a, face_box(a), 0.35), crop_around(b, face_box(b), 0.35)


# -- audio -------------------------------------------------------------------------------------------


def chirp(seconds: float, rate: int, channels: int = 2) -> np.ndarray:
    """A 200→2000 Hz chirp (left) and a 440 Hz tone (right), float32 in [-0.5, 0.5], shape (channels, n)."""
    t = np.arange(int(seconds * rate)) / rate
    sweep = np.sin(2 * np.pi * (200 * t + (1800 / (2 * seconds)) * t * t))
    tone = np.sin(2 * np.pi * 440 * t)
    signal = np.stack([sweep, tone][:channels]) * 0.5
    return signal.astype(np.float32)


_AUDIO_FORMATS = {
    "aac": "fltp",
    "libopus": "flt",
    "libmp3lame": "fltp",
    "pcm_s16le": "s16",
    "vorbis": "fltp",
    "flac": "s16",
    "alac": "s16p",
}


def _audio_frames(codec: str, seconds: float, rate: int) -> Iterator[Any]:
    import av

    fmt = _AUDIO_FORMATS[codec]
    samples = chirp(seconds, rate)
    if fmt.startswith("s16"):
        samples = (samples * 32767).astype(np.int16)
    block = 1024
    for start in range(0, samples.shape[1], block):
        chunk = samples[:, start : start + block]
        array = chunk if fmt.endswith("p") else np.ascontiguousarray(chunk.T).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(array), format=fmt, layout="stereo")
        frame.sample_rate = rate
        frame.pts = start
        frame.time_base = Fraction(1, rate)
        yield frame


# -- writing clips -----------------------------------------------------------------------------------


def write_clip(
    path: Path,
    frames: Iterable[np.ndarray],
    *,
    codec: str = "libx264",
    fps: int = 25,
    pts: Sequence[int] | None = None,
    time_base: Fraction | None = None,
    audio: str | None = "aac",
    audio_rate: int = 48000,
    fmt: str | None = None,
    pix_fmt: str = "yuv420p",
    rotation: int | None = None,
    options: dict[str, str] | None = None,
) -> Path:
    """Encode ``frames`` (RGB arrays) into ``path``; ``pts`` + ``time_base`` give VFR timing.

    ``rotation`` is PyAV's counter-clockwise display rotation (-90: "turn 90° clockwise to display",
    what a phone held upright writes).
    """
    import av

    frames = list(frames)
    height, width = frames[0].shape[:2]
    with av.open(str(path), "w", format=fmt) as container:
        video = container.add_stream(codec, rate=fps)
        video.width, video.height, video.pix_fmt = width, height, pix_fmt
        video.options = dict(options or ({"preset": "veryfast"} if codec == "libx264" else {}))
        if codec == "libvpx-vp9":
            video.options = {"deadline": "realtime", "cpu-used": "8", **(options or {})}
        if time_base is not None:
            video.codec_context.time_base = time_base
        if rotation is not None:
            video.set_display_rotation(rotation)
        sound = None
        if audio is not None:
            sound = container.add_stream(audio, rate=audio_rate, layout="stereo")
            if audio == "vorbis":
                sound.codec_context.options = {"strict": "experimental"}
            sound.codec_context.time_base = Fraction(1, audio_rate)
        seconds = len(frames) / fps if pts is None else float((pts[-1] + pts[1] - pts[0]) * time_base)  # type: ignore[operator]
        audio_frames = _audio_frames(audio, seconds, audio_rate) if sound is not None else iter(())
        for i, pixels in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(pixels), format="rgb24")
            if pts is not None:
                frame.pts = pts[i]
                frame.time_base = time_base
            else:
                frame.pts = i
                frame.time_base = Fraction(1, fps)
            container.mux(video.encode(frame))
            # keep audio roughly interleaved with video
            video_time = (i + 1) / fps if pts is None else float(pts[i] * time_base)  # type: ignore[operator]
            for audio_frame in audio_frames:
                container.mux(sound.encode(audio_frame))  # type: ignore[union-attr]
                if audio_frame.pts / audio_rate > video_time:
                    break
        for audio_frame in audio_frames:
            container.mux(sound.encode(audio_frame))  # type: ignore[union-attr]
        container.mux(video.encode(None))
        if sound is not None:
            container.mux(sound.encode(None))
    return path


def write_audio_only(path: Path, seconds: float = 2.0) -> Path:
    import av

    with av.open(str(path), "w") as container:
        sound = container.add_stream("aac", rate=48000, layout="stereo")
        for frame in _audio_frames("aac", seconds, 48000):
            container.mux(sound.encode(frame))
        container.mux(sound.encode(None))
    return path


def write_huge_clip(path: Path, width: int = 9000, height: int = 4800) -> Path:
    """One black frame of ``width``×``height`` (43 MP: over the limit), H.264 in Matroska."""
    import av

    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=25)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.options = {"preset": "ultrafast"}
        container.mux(video.encode(av.VideoFrame(width, height, "yuv420p")))
        container.mux(video.encode(None))
    return path


def packet_info(path: Path, kind: str = "video") -> list[tuple[int | None, int, int, bool]]:
    """(pts, byte position, size, keyframe) of each non-empty packet of the first ``kind`` stream."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0] if kind == "video" else container.streams.audio[0]
        return [(p.pts, p.pos, p.size, p.is_keyframe) for p in container.demux(stream) if p.size]


def packet_bytes(path: Path, kind: str = "audio", stream_number: int = 0) -> list[bytes]:
    """The payload bytes of every packet of one stream, in file order."""
    import av

    with av.open(str(path)) as container:
        streams = container.streams.audio if kind == "audio" else container.streams.video
        stream = streams[stream_number]
        return [bytes(p) for p in container.demux(stream) if p.size]


def truncate_at_first_packet(src: Path, dst: Path, keep_extra: int = 32) -> Path:
    """Copy ``src`` keeping only its header and a few bytes of the first video packet."""
    first = packet_info(src)[0]
    data = src.read_bytes()[: first[1] + keep_extra]
    dst.write_bytes(data)
    return dst


def corrupt_packet(src: Path, dst: Path, number: int, *, skip: int = 12) -> tuple[int | None, int, int, bool]:
    """Copy ``src`` to ``dst`` with the payload of video packet ``number`` (file order) overwritten by
    random bytes, after its first ``skip`` bytes. Returns that packet's (pts, pos, size, key)."""
    shutil.copyfile(src, dst)
    packet = packet_info(src)[number]
    _, pos, size, _ = packet
    data = bytearray(dst.read_bytes())
    length = max(0, size - skip)
    data[pos + skip : pos + skip + length] = (
        np.random.default_rng(7).integers(0, 256, length, dtype=np.uint8).tobytes()
    )
    dst.write_bytes(bytes(data))
    return packet


def decode_all(path: Path) -> list[tuple[int, np.ndarray, int]]:
    """(pts, RGB pixels, display rotation) of every frame, decoded by PyAV directly."""
    import av

    with av.open(str(path)) as container:
        return [(f.pts, f.to_ndarray(format="rgb24"), f.rotation) for f in container.decode(video=0)]


# -- a dlib analyzer for tracking tests -------------------------------------------------------------


def dlib_analyzer(home: Any) -> Any:
    """The project's dlib analyzer; if its backend module is missing, a direct dlib stand-in."""
    try:
        from likeness.faces.backends import load_analyzer
    except ImportError:
        return _DirectDlib()
    return load_analyzer("dlib", home)


class _DirectDlib:
    """HOG + 68/5-point landmarks + ResNet embeddings straight from dlib and face_recognition_models."""

    name = "dlib-direct"
    embedding_space = "dlib_resnet_v1"

    def __init__(self) -> None:
        import dlib

        spec = importlib.util.find_spec("face_recognition_models")
        assert spec is not None and spec.submodule_search_locations
        models = Path(next(iter(spec.submodule_search_locations))) / "models"
        self._detector = dlib.get_frontal_face_detector()
        self._p68 = dlib.shape_predictor(str(models / "shape_predictor_68_face_landmarks.dat"))
        self._p5 = dlib.shape_predictor(str(models / "shape_predictor_5_face_landmarks.dat"))
        self._rec = dlib.face_recognition_model_v1(str(models / "dlib_face_recognition_resnet_model_v1.dat"))

    def analyze(self, pixels: np.ndarray) -> list[Any]:
        from likeness.faces.types import Face

        pixels = np.ascontiguousarray(pixels)
        faces = []
        for rect in self._detector(pixels, 1):
            s68, s5 = self._p68(pixels, rect), self._p5(pixels, rect)
            faces.append(
                Face(
                    box=(rect.left(), rect.top(), rect.right(), rect.bottom()),
                    landmarks=np.array([[p.x, p.y] for p in s68.parts()], dtype=np.float32),
                    landmarks5=np.array([[p.x, p.y] for p in s5.parts()], dtype=np.float32),
                    embedding=np.asarray(self._rec.compute_face_descriptor(pixels, s5), dtype=np.float32),
                    score=1.0,
                    embedding_space=self.embedding_space,
                )
            )
        return sorted(faces, key=lambda f: f.center_x)

    def distance(self, a: np.ndarray, b: np.ndarray) -> float:
        return float(np.linalg.norm(np.asarray(a, np.float64) - np.asarray(b, np.float64)))

    def describe(self) -> dict[str, str]:
        return {"backend": self.name}
