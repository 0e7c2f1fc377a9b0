"""Small stand-in ONNX models with the input/output signatures of the real insightface files.

The real buffalo_l pack and inswapper_128 are hundreds of megabytes and may not be downloaded in tests,
so the tests build these instead (all deterministic, a few MB in total, built in well under a second):

* ``build_detector``: an SCRFD-like detector, input ``[1, 3, H, W]`` with free H and W, nine outputs
  (scores ``[N, 1]``, box distances ``[N, 4]``, keypoint offsets ``[N, 10]`` for strides 8, 16, 32 with
  two anchors per location, N = (H/s)·(W/s)·2). It "finds" the faces it was configured with: every
  anchor regresses to the configured box and keypoints, and the score peaks at the anchors nearest the
  box centre, so insightface's own decoding and NMS recover exactly the configured box. Face *i* is
  emitted on stride *i*, so up to three faces. Coordinates are in detector-input pixels.
* ``build_recognizer``: ArcFace-like, ``[N, 3, 112, 112] → [N, 512]``: a fixed random projection of the
  8×8-pooled, mean-centred pixels. The same aligned face gives the same embedding, different faces give
  different ones (not a face recogniser: it does not know who anyone is).
* ``build_landmarker``: ``[1, 3, 192, 192] → [1, 212]``, a fixed 106-point face layout in the crop frame
  (insightface maps it back around the detected box).
* ``build_genderage``: ``[1, 3, 96, 96] → [1, 3]``, constant.
* ``build_inswapper``: inputs ``target [1, 3, 128, 128]`` and ``source [1, 512]``, output
  ``[1, 3, 128, 128]``: half the target plus a colour computed from the latent, so different sources give
  different outputs. ``emap`` (512×512, orthogonal) is the graph's **last initializer**, as insightface's
  INSwapper expects.
* ``build_restorer``: GFPGAN-like ``[1, 3, 512, 512] → [1, 3, 512, 512]`` in [-1, 1] (lowers contrast).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

OPSET = 17
IR_VERSION = 8
DET_SIZE = 640
STRIDES = (8, 16, 32)


def _onnx():
    import onnx

    return onnx


@dataclass(frozen=True)
class StandinFace:
    """A face the stand-in detector reports, in detector-input pixels (640×640 letterboxed input)."""

    box: tuple[float, float, float, float]
    kps: tuple[tuple[float, float], ...]
    peak: float = 0.9

    @staticmethod
    def for_image(
        image_size: tuple[int, int],
        box: tuple[float, float, float, float],
        kps: np.ndarray | None = None,
        peak: float = 0.9,
        det_size: int = DET_SIZE,
    ) -> StandinFace:
        """Configure a face given in *image* pixels of an image of ``(width, height)``.

        insightface letterboxes the image into the top-left of a ``det_size`` square, scaled by
        ``det_size / max(width, height)``; this applies the same scale. ``kps`` defaults to a plausible
        five-point layout inside the box (eyes, nose tip, mouth corners).
        """
        width, height = image_size
        scale = det_size / max(width, height)
        if kps is None:
            kps = default_kps(box)
        det_box = tuple(float(v) * scale for v in box)
        det_kps = tuple((float(x) * scale, float(y) * scale) for x, y in np.asarray(kps, dtype=np.float64))
        return StandinFace(box=det_box, kps=det_kps, peak=peak)  # type: ignore[arg-type]


def default_kps(box: tuple[float, float, float, float]) -> np.ndarray:
    """Five points laid out inside ``box`` roughly where eyes, nose and mouth corners sit."""
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    rel = np.array([[0.32, 0.40], [0.68, 0.40], [0.50, 0.58], [0.36, 0.76], [0.64, 0.76]])
    return np.column_stack([x1 + rel[:, 0] * w, y1 + rel[:, 1] * h])


@dataclass
class _Graph:
    """A tiny helper around onnx.helper that names nodes and constants uniquely."""

    nodes: list = field(default_factory=list)
    initializers: list = field(default_factory=list)
    count: int = 0

    def name(self, stem: str) -> str:
        self.count += 1
        return f"{stem}_{self.count}"

    def const(self, value: np.ndarray | float | int, stem: str = "const") -> str:
        onnx = _onnx()
        array = np.asarray(value)
        if array.dtype == np.float64:
            array = array.astype(np.float32)
        name = self.name(stem)
        self.initializers.append(onnx.numpy_helper.from_array(array, name))
        return name

    def op(
        self,
        op_type: str,
        inputs: list[str],
        stem: str | None = None,
        *,
        out: str | None = None,
        **attrs: object,
    ) -> str:
        """Add one node; its output is called ``out`` when given (a graph output), else a fresh name."""
        onnx = _onnx()
        out = out or self.name(stem or op_type.lower())
        self.nodes.append(onnx.helper.make_node(op_type, inputs, [out], name=self.name("node"), **attrs))
        return out

    def model(self, inputs: list, outputs: list, name: str):
        onnx = _onnx()
        graph = onnx.helper.make_graph(self.nodes, name, inputs, outputs, initializer=self.initializers)
        model = onnx.helper.make_model(
            graph, opset_imports=[onnx.helper.make_opsetid("", OPSET)], producer_name="likeness-standin"
        )
        model.ir_version = IR_VERSION
        onnx.checker.check_model(model)
        return model


def _save(model, path: Path) -> Path:
    onnx = _onnx()
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(model, str(path))
    return path


def _value(name: str, shape: list) -> object:
    onnx = _onnx()
    return onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, shape)


def build_detector(path: Path, faces: list[StandinFace]) -> Path:
    """SCRFD-like detector (9 outputs) that reports ``faces`` (at most three)."""
    if len(faces) > len(STRIDES):
        raise ValueError("the stand-in detector reports at most three faces (one per stride)")
    g = _Graph()
    shape = g.op("Shape", ["input.1"], "shape")
    height = g.op("Gather", [shape, g.const(np.array(2, dtype=np.int64))], "height", axis=0)
    width = g.op("Gather", [shape, g.const(np.array(3, dtype=np.int64))], "width", axis=0)
    scores_out, boxes_out, kps_out = [], [], []
    for index, stride in enumerate(STRIDES):
        face = (
            faces[index] if index < len(faces) else StandinFace(box=(0, 0, 1, 1), kps=((0, 0),) * 5, peak=0.0)
        )
        s_int = g.const(np.array(stride, dtype=np.int64))
        rows = g.op("Div", [height, s_int])
        cols = g.op("Div", [width, s_int])
        zero, one = g.const(np.array(0, dtype=np.int64)), g.const(np.array(1, dtype=np.int64))
        ys = g.op("Cast", [g.op("Range", [zero, rows, one])], to=1)
        xs = g.op("Cast", [g.op("Range", [zero, cols, one])], to=1)
        s_f = g.const(np.array(float(stride), dtype=np.float32))
        ys = g.op("Mul", [ys, s_f])
        xs = g.op("Mul", [xs, s_f])
        col_y = g.op("Unsqueeze", [ys, g.const(np.array([1], dtype=np.int64))])  # [h, 1]
        row_x = g.op("Unsqueeze", [xs, g.const(np.array([0], dtype=np.int64))])  # [1, w]
        zeros = g.op("Add", [g.op("Mul", [col_y, g.const(0.0)]), g.op("Mul", [row_x, g.const(0.0)])])
        grid_y = g.op("Add", [col_y, zeros])  # [h, w]
        grid_x = g.op("Add", [row_x, zeros])
        anchors = g.const(np.array([1, 1, 2], dtype=np.int64))
        flat = g.const(np.array([-1, 1], dtype=np.int64))
        # Two anchors per location, ordered (y, x, anchor) like insightface's anchor centres.
        ay = g.op(
            "Reshape",
            [
                g.op(
                    "Expand", [g.op("Unsqueeze", [grid_y, g.const(np.array([2], dtype=np.int64))]), anchors]
                ),
                flat,
            ],
        )
        ax = g.op(
            "Reshape",
            [
                g.op(
                    "Expand", [g.op("Unsqueeze", [grid_x, g.const(np.array([2], dtype=np.int64))]), anchors]
                ),
                flat,
            ],
        )
        x1, y1, x2, y2 = face.box
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        # Score: peak · exp(-d² / 2s²) around the box centre.
        dx = g.op("Sub", [ax, g.const(np.float32(cx))])
        dy = g.op("Sub", [ay, g.const(np.float32(cy))])
        d2 = g.op("Add", [g.op("Mul", [dx, dx]), g.op("Mul", [dy, dy])])
        expo = g.op("Exp", [g.op("Mul", [d2, g.const(np.float32(-1.0 / (2.0 * stride * stride)))])])
        score = g.op("Mul", [expo, g.const(np.float32(face.peak))], out=f"score_{stride}")
        # Box distances (left, top, right, bottom) / stride from each anchor to the configured box.
        xyxy = g.op("Concat", [ax, ay, ax, ay], axis=1)
        box_delta = g.op("Sub", [xyxy, g.const(np.array([[x1, y1, x2, y2]], dtype=np.float32))])
        sign = np.array([[1, 1, -1, -1]], dtype=np.float32) / stride
        boxes = g.op("Mul", [box_delta, g.const(sign)], out=f"bbox_{stride}")
        kp_xy = g.op("Concat", [ax, ay] * 5, axis=1)
        kp_target = np.array([[c for point in face.kps for c in point]], dtype=np.float32)
        kp_delta = g.op("Sub", [g.const(kp_target), kp_xy])
        kps = g.op("Mul", [kp_delta, g.const(np.float32(1.0 / stride))], out=f"kps_{stride}")
        scores_out.append((score, stride, 1))
        boxes_out.append((boxes, stride, 4))
        kps_out.append((kps, stride, 10))
    outputs = [
        _value(name, [f"n{stride}", width_]) for name, stride, width_ in scores_out + boxes_out + kps_out
    ]
    inputs = [_value("input.1", [1, 3, "height", "width"])]
    return _save(g.model(inputs, outputs, "standin_scrfd"), path)


def build_recognizer(path: Path, seed: int = 1234) -> Path:
    """ArcFace-like recogniser: ``[N, 3, 112, 112] → [N, 512]`` (fixed random projection)."""
    g = _Graph()
    pooled = g.op("AveragePool", ["input.1"], "pooled", kernel_shape=[8, 8], strides=[8, 8])  # [N,3,14,14]
    mean = g.op("ReduceMean", [pooled], "mean", axes=[1, 2, 3], keepdims=1)
    centred = g.op("Sub", [pooled, mean], "centred")
    flat = g.op("Flatten", [centred], "flat", axis=1)  # [N, 588]
    rng = np.random.default_rng(seed)
    weights = (rng.standard_normal((588, 512)) / np.sqrt(588)).astype(np.float32)
    g.op("MatMul", [flat, g.const(weights, "projection")], out="683")
    inputs = [_value("input.1", ["None", 3, 112, 112])]
    return _save(g.model(inputs, [_value("683", ["None", 512])], "standin_arcface"), path)


def standin_landmarks_106() -> np.ndarray:
    """A fixed 106-point layout in the landmark model's normalised crop frame ([-1, 1])."""
    theta = np.linspace(0.0, np.pi, 33)
    contour = np.column_stack([0.6 * np.cos(theta), -0.1 + 0.7 * np.sin(theta)])
    brow_x = np.concatenate([np.linspace(-0.5, -0.1, 9), np.linspace(0.1, 0.5, 9)])
    brows = np.column_stack([brow_x, -0.35 - 0.05 * np.sin(np.linspace(0, np.pi, 18))])
    inner_x, inner_y = np.meshgrid(np.linspace(-0.35, 0.35, 11), np.linspace(-0.2, 0.4, 5))
    inner = np.column_stack([inner_x.ravel(), inner_y.ravel()])
    return np.concatenate([contour, brows, inner]).astype(np.float32)  # 33 + 18 + 55 = 106


def build_landmarker(path: Path) -> Path:
    """2d106-like landmark model: ``[1, 3, 192, 192] → [1, 212]``."""
    g = _Graph()
    mean = g.op("ReduceMean", ["data"], "mean", axes=[1, 2, 3], keepdims=0)  # [1]
    zero = g.op(
        "Mul", [g.op("Unsqueeze", [mean, g.const(np.array([1], dtype=np.int64))]), g.const(np.float32(0.0))]
    )  # [1,1]
    layout = standin_landmarks_106().reshape(1, 212)
    g.op("Add", [g.const(layout, "layout"), zero], out="fc1")
    return _save(
        g.model([_value("data", [1, 3, 192, 192])], [_value("fc1", [1, 212])], "standin_2d106"), path
    )


def build_genderage(path: Path) -> Path:
    """Gender/age-like attribute model: ``[1, 3, 96, 96] → [1, 3]`` (constant)."""
    g = _Graph()
    mean = g.op("ReduceMean", ["data"], "mean", axes=[1, 2, 3], keepdims=0)
    zero = g.op(
        "Mul", [g.op("Unsqueeze", [mean, g.const(np.array([1], dtype=np.int64))]), g.const(np.float32(0.0))]
    )
    g.op("Add", [g.const(np.array([[0.2, 0.8, 0.35]], dtype=np.float32), "attributes"), zero], out="fc1")
    return _save(
        g.model([_value("data", [1, 3, 96, 96])], [_value("fc1", [1, 3])], "standin_genderage"), path
    )


def standin_emap(seed: int = 99) -> np.ndarray:
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((512, 512)))
    return q.astype(np.float32)


def build_inswapper(path: Path, *, emap_last: bool = True, seed: int = 7) -> Path:
    """inswapper-like swapper; ``emap_last=False`` builds a broken file whose emap is not last."""
    onnx = _onnx()
    g = _Graph()
    rng = np.random.default_rng(seed)
    colour_weights = (rng.standard_normal((512, 3)) * 2.0).astype(np.float32)
    colour = g.op("Sigmoid", [g.op("MatMul", ["source", g.const(colour_weights, "colour_weights")])])  # [1,3]
    colour = g.op("Reshape", [colour, g.const(np.array([1, 3, 1, 1], dtype=np.int64), "colour_shape")])
    half = g.const(np.float32(0.5), "half")
    mixed = g.op("Add", [g.op("Mul", ["target", half]), g.op("Mul", [colour, half])])
    g.op("Clip", [mixed, g.const(np.float32(0.0), "low"), g.const(np.float32(1.0), "high")], out="output")
    emap = onnx.numpy_helper.from_array(standin_emap(), "emap")
    if emap_last:
        g.initializers.append(emap)
    else:
        g.initializers.insert(0, emap)
    inputs = [_value("target", [1, 3, 128, 128]), _value("source", [1, 512])]
    return _save(g.model(inputs, [_value("output", [1, 3, 128, 128])], "standin_inswapper"), path)


def build_restorer(path: Path) -> Path:
    """GFPGAN-like restorer: ``[1, 3, 512, 512] → [1, 3, 512, 512]`` in [-1, 1] (halves the contrast)."""
    g = _Graph()
    g.op("Mul", ["input", g.const(np.float32(0.5), "gain")], out="output")
    return _save(
        g.model([_value("input", [1, 3, 512, 512])], [_value("output", [1, 3, 512, 512])], "standin_gfpgan"),
        path,
    )


def build_buffalo_pack(
    models_dir: Path, faces: list[StandinFace], *, with_landmarks: bool = True, with_genderage: bool = True
) -> Path:
    """Write a stand-in buffalo_l pack in insightface's layout: ``<models_dir>/buffalo_l/*.onnx``."""
    pack = models_dir / "buffalo_l"
    build_detector(pack / "det_10g.onnx", faces)
    build_recognizer(pack / "w600k_r50.onnx")
    if with_landmarks:
        build_landmarker(pack / "2d106det.onnx")
    if with_genderage:
        build_genderage(pack / "genderage.onnx")
    return pack
