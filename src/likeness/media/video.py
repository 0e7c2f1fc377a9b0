"""Video in and out with PyAV: probe with limits, stream upright RGB frames, encode in resumable chunks.

The three parts live in their own modules; this one is the import path everyone uses.

* :func:`probe_video` → :class:`VideoInfo` (``video_probe``): checks a file before decoding — empty,
  unreadable, no video stream, dimensions over 8192 px a side or 40 MP a frame, undecodable — and
  raises :class:`~likeness.errors.BadInput` with the reason.
* :func:`iter_frames` / :func:`open_frames` → :class:`DecodedFrame` (``video_read``): one frame at a
  time (bounded memory), H×W×3 uint8 RGB, rotation applied, exact pts. Damage mid-file stops with
  ``BadInput`` naming the frame and time (fail-closed) unless the caller opts in to ``on_corrupt="skip"``.
* :class:`VideoEncoder` (``video_encode``): writes frames into a **job folder the caller owns**, in
  segments that survive a kill and are reused on a rerun, and returns the finished file in that
  folder (:class:`EncodedVideo`). It never writes a final output name: only ``likeness.disclosure``
  does that (invariant 1), after labelling and watermarking every frame and signing the file.

How a video job uses them: :func:`likeness.disclosure.seal.seal_frames` with a footage sink owns the encoder
(job folder next to the output, resume point, label + watermark on every frame, self-check, C2PA,
record, rename) and pulls frames from the pipeline's renderer
(:class:`likeness.jobs.tracks.FootageFrames`), which reads them with :func:`open_frames`
from the resume point the encoder reports (``resume_after_pts``, ``resume_frames``,
``resume_state``). :func:`looks_like_video` routes a job down the video road by suffix or header.

Threads: ``open_frames(..., prefetch=N)`` decodes in a background thread and
``VideoEncoder(..., background=True)`` encodes in one (:mod:`likeness.media.background`; PyAV
releases the GIL while it works), each behind a bounded queue; the frames are the same as without.

PyAV (``av``) is imported inside the functions, so importing this module costs nothing.
"""

from __future__ import annotations

from likeness.media.video_encode import (
    EncodedVideo,
    EncodeSettings,
    SegmentRecord,
    VideoEncoder,
    remove_job,
)
from likeness.media.video_probe import (
    DEFAULT_MAX_FRAME_PIXELS,
    DEFAULT_MAX_SIDE,
    VIDEO_SUFFIXES,
    AudioStreamInfo,
    VideoInfo,
    looks_like_video,
    probe_video,
)
from likeness.media.video_read import DecodedFrame, FrameReader, SkippedSpan, iter_frames, open_frames

__all__ = [
    "DEFAULT_MAX_FRAME_PIXELS",
    "DEFAULT_MAX_SIDE",
    "VIDEO_SUFFIXES",
    "AudioStreamInfo",
    "DecodedFrame",
    "EncodeSettings",
    "EncodedVideo",
    "FrameReader",
    "SegmentRecord",
    "SkippedSpan",
    "VideoEncoder",
    "VideoInfo",
    "iter_frames",
    "looks_like_video",
    "open_frames",
    "probe_video",
    "remove_job",
]
