"""PIL-rendered sticker-like images and template view descriptions for the sticker twins.

A sticker: a cartoon character (a species shape in its sticker set's colour, outlined) on a light
background, with a facial expression and expression marks for an emotion (tears, anger vein,
exclamation mark, sweat drop, hearts, green squiggles...), an optional caption word, jittered in
position, size and rotation. Its four view descriptions follow MGHFT's marker format
(``#The sticker's intention: ... #The sticker's style: ... #The sticker's main role: ...
#The sticker's gesture: ...``), each built from phrase templates for an emotion.
"""

from __future__ import annotations

import math
import random

from PIL import Image, ImageDraw

# emotion -> (intention phrases, style words, main-role phrases, gesture phrases, caption words)
PHRASES: dict[str, tuple[tuple[str, ...], ...]] = {
    "happiness": (
        ("share a happy moment", "celebrate good news with a friend", "spread joy and good vibes"),
        ("bright and bouncy", "sunny and playful", "warm and cheerful"),
        ("with a beaming grin", "smiling from ear to ear", "with sparkling happy eyes"),
        ("jumping with both arms up", "dancing on one foot", "giving a big thumbs up"),
        ("YAY", "LOL", "HAHA"),
    ),
    "neutral": (
        (
            "reply in a calm matter-of-fact way",
            "acknowledge the message plainly",
            "say okay without much feeling",
        ),
        ("plain and minimal", "simple and flat", "quiet and understated"),
        ("with a blank look", "with an expressionless face", "staring straight ahead"),
        ("standing still with arms at its sides", "sitting upright", "holding a cup of tea"),
        ("OK", "HMM", "SURE"),
    ),
    "sadness": (
        (
            "express that they feel down",
            "say they miss someone and feel lonely",
            "show disappointment and sorrow",
        ),
        ("muted blue and grey", "soft and gloomy", "rainy and washed out"),
        ("with teary eyes", "with a trembling lower lip", "sobbing quietly"),
        ("slumping with its head down", "curled up in a corner", "wiping away tears"),
        ("SOB", "NOOO", "SAD"),
    ),
    "anger": (
        ("complain furiously", "show they are annoyed and mad", "protest angrily against something"),
        ("harsh red and jagged", "fiery and intense", "sharp and aggressive"),
        ("with a deep scowl", "red in the face", "with furrowed eyebrows"),
        ("stomping and clenching its fists", "shaking a fist", "flipping a table"),
        ("GRR", "MAD", "ARGH"),
    ),
    "surprise": (
        ("react to shocking news", "show they cannot believe what happened", "express sudden amazement"),
        ("bold with burst lines", "loud and explosive", "startling and vivid"),
        ("with its jaw dropped", "with wide round eyes", "gasping"),
        ("leaning back with hands on cheeks", "jumping backwards", "freezing mid-step"),
        ("WOW", "OMG", "WHAT"),
    ),
    "fear": (
        ("say they are scared", "show nervousness about what comes next", "express panic and worry"),
        ("shaky and dark", "tense and shadowy", "pale and jittery"),
        ("shaking all over", "pale with fright", "with sweat running down"),
        ("hiding behind its hands", "backing away slowly", "cowering under a blanket"),
        ("EEK", "HELP", "YIKES"),
    ),
    "disgust": (
        ("show they find something gross", "reject something distasteful", "express revulsion"),
        ("sickly green and wobbly", "murky and queasy", "sour-toned"),
        ("wrinkling its nose", "with a sour grimace", "looking nauseous"),
        ("turning away and pushing something off", "holding its nose", "sticking out its tongue"),
        ("EW", "YUCK", "BLEH"),
    ),
}
PHRASES["love"] = (
    ("send affection to someone special", "say they adore the receiver", "express warm love"),
    ("pink and dreamy", "soft pastel with hearts", "sweet and rosy"),
    ("with heart-shaped eyes", "blushing shyly", "with a dreamy smile"),
    ("hugging a big heart", "blowing a kiss", "holding hands over its chest"),
    ("LOVE", "XOXO", "MWAH"),
)
PHRASES["sorrow"] = PHRASES["sadness"]
PHRASES["hate"] = PHRASES["disgust"]

# which face to draw for an emotion name
FACE_OF = {"sorrow": "sadness", "hate": "disgust"}
SPECIES = ("blob", "cat", "bear", "bunny", "ghost", "frog")
COLOURS = {
    "yellow": (250, 215, 80),
    "pink": (245, 160, 190),
    "white": (245, 245, 240),
    "brown": (170, 120, 80),
    "orange": (245, 150, 60),
    "mint": (150, 225, 190),
    "lilac": (190, 160, 230),
    "blue": (140, 195, 240),
}
ART_STYLES = ("flat vector", "thick-outlined cartoon", "watercolour", "pixel-art", "crayon")
INK = (40, 30, 30)


def view_descriptions(
    rng: random.Random, view_emotions: tuple[str, str, str, str], species: str, colour: str
) -> tuple[str, str, str, str]:
    """The four views, view ``i`` phrased for emotion ``view_emotions[i]``."""
    intent, style, role, gesture = view_emotions
    art = rng.choice(ART_STYLES)
    return (
        f"#The sticker's intention: The sender wants to {rng.choice(PHRASES[intent][0])}.",
        f"#The sticker's style: A {rng.choice(PHRASES[style][1])} {art} drawing in {colour} tones.",
        f"#The sticker's main role: A {colour} {species} {rng.choice(PHRASES[role][2])}.",
        f"#The sticker's gesture: The {species} is {rng.choice(PHRASES[gesture][3])}.",
    )


def caption_word(rng: random.Random, emotion: str) -> str:
    return rng.choice(PHRASES[emotion][4])


def _ellipse(draw: ImageDraw.ImageDraw, cx: float, cy: float, rx: float, ry: float, **kw) -> None:
    draw.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], **kw)


def _body(draw: ImageDraw.ImageDraw, species: str, cx: float, cy: float, r: float, fill, width: int) -> None:
    """The character's silhouette (ears first, then the head/body)."""
    ink = {"outline": INK, "width": width}
    if species == "cat":
        for s in (-1, 1):
            draw.polygon(
                [
                    (cx + s * 0.85 * r, cy - 0.2 * r),
                    (cx + s * 0.75 * r, cy - 1.25 * r),
                    (cx + s * 0.2 * r, cy - 0.8 * r),
                ],
                fill=fill,
                outline=INK,
            )
    elif species == "bear":
        for s in (-1, 1):
            _ellipse(draw, cx + s * 0.7 * r, cy - 0.75 * r, 0.32 * r, 0.32 * r, fill=fill, **ink)
    elif species == "bunny":
        for s in (-1, 1):
            _ellipse(draw, cx + s * 0.35 * r, cy - 1.3 * r, 0.18 * r, 0.55 * r, fill=fill, **ink)
    elif species == "frog":
        for s in (-1, 1):
            _ellipse(draw, cx + s * 0.5 * r, cy - 0.8 * r, 0.3 * r, 0.3 * r, fill=fill, **ink)
    if species == "ghost":
        draw.rounded_rectangle([cx - r, cy - r, cx + r, cy + 1.1 * r], radius=int(r * 0.9), fill=fill, **ink)
    elif species == "frog":
        _ellipse(draw, cx, cy, 1.15 * r, 0.85 * r, fill=fill, **ink)
    else:
        _ellipse(draw, cx, cy, r, 0.95 * r, fill=fill, **ink)


def _face(draw: ImageDraw.ImageDraw, face: str, cx: float, cy: float, r: float, width: int) -> None:
    """Eyes, brows, mouth and expression marks of ``face`` on a head centred at (cx, cy)."""
    ex, ey, er = 0.4 * r, cy - 0.12 * r, 0.14 * r
    my = cy + 0.35 * r
    w = max(1, width)
    eyes = [(cx - ex, ey), (cx + ex, ey)]
    if face == "happiness":
        for x, y in eyes:
            draw.arc([x - er * 1.4, y - er, x + er * 1.4, y + er * 1.6], 200, 340, fill=INK, width=w + 1)
        draw.chord(
            [cx - 0.38 * r, my - 0.2 * r, cx + 0.38 * r, my + 0.28 * r],
            0,
            180,
            fill=(200, 50, 60),
            outline=INK,
        )
        for x, _ in eyes:
            _ellipse(draw, x, cy + 0.18 * r, 0.12 * r, 0.07 * r, fill=(250, 130, 150))
    elif face == "neutral":
        for x, y in eyes:
            _ellipse(draw, x, y, er * 0.8, er * 0.8, fill=INK)
        draw.line([cx - 0.25 * r, my, cx + 0.25 * r, my], fill=INK, width=w + 1)
    elif face == "sadness":
        for x, y in eyes:
            _ellipse(draw, x, y, er * 0.8, er * 0.8, fill=INK)
            draw.line([x - er * 1.6, y - er * 1.2, x + er * 1.2, y - er * 2.4], fill=INK, width=w)
            _ellipse(draw, x + er * 0.3, y + er * 3.2, er * 0.7, er * 1.4, fill=(60, 130, 240))
        draw.arc([cx - 0.3 * r, my, cx + 0.3 * r, my + 0.35 * r], 200, 340, fill=INK, width=w + 1)
    elif face == "anger":
        for s, (x, y) in zip((-1, 1), eyes, strict=True):
            _ellipse(draw, x, y, er * 0.8, er * 0.8, fill=INK)
            draw.line([x + s * er * 1.8, y - er * 2.6, x - s * er * 1.2, y - er * 1.0], fill=INK, width=w + 1)
        draw.arc([cx - 0.28 * r, my, cx + 0.28 * r, my + 0.3 * r], 200, 340, fill=INK, width=w + 1)
        vx, vy, vr = cx + 0.55 * r, cy - 0.7 * r, 0.2 * r  # the anger vein
        for a in (0, 90, 180, 270):
            t = math.radians(a + 45)
            draw.line([vx, vy, vx + vr * math.cos(t), vy + vr * math.sin(t)], fill=(230, 30, 30), width=w + 1)
    elif face == "surprise":
        for x, y in eyes:
            _ellipse(draw, x, y, er * 1.6, er * 1.6, fill=(255, 255, 255), outline=INK, width=w)
            _ellipse(draw, x, y, er * 0.6, er * 0.6, fill=INK)
        _ellipse(draw, cx, my + 0.05 * r, 0.13 * r, 0.18 * r, fill=(120, 30, 40), outline=INK)
        bx, by = cx + 1.15 * r, cy - 0.9 * r  # exclamation mark
        draw.rectangle([bx - 0.07 * r, by - 0.35 * r, bx + 0.07 * r, by + 0.1 * r], fill=(230, 40, 40))
        _ellipse(draw, bx, by + 0.25 * r, 0.07 * r, 0.07 * r, fill=(230, 40, 40))
    elif face == "fear":
        for x, y in eyes:
            _ellipse(draw, x, y, er * 1.5, er * 1.5, fill=(255, 255, 255), outline=INK, width=w)
            _ellipse(draw, x, y, er * 0.35, er * 0.35, fill=INK)
        pts = [(cx - 0.3 * r + i * 0.1 * r, my + (0.06 * r if i % 2 else -0.06 * r)) for i in range(7)]
        draw.line(pts, fill=INK, width=w)
        _ellipse(draw, cx - 0.95 * r, cy - 0.3 * r, 0.1 * r, 0.2 * r, fill=(90, 170, 250))  # sweat drop
        for i in range(3):  # shiver lines
            y = cy - 0.4 * r + i * 0.3 * r
            draw.line([cx + 1.1 * r, y, cx + 1.3 * r, y + 0.1 * r], fill=(80, 80, 160), width=w)
    elif face == "disgust":
        for x, y in eyes:
            draw.line([x - er * 1.5, y, x + er * 1.5, y + er * 0.6], fill=INK, width=w + 1)
        draw.line([cx - 0.3 * r, my + 0.05 * r, cx + 0.3 * r, my - 0.08 * r], fill=INK, width=w + 1)
        _ellipse(draw, cx + 0.1 * r, my + 0.1 * r, 0.1 * r, 0.12 * r, fill=(230, 90, 110))  # tongue
        for i in range(3):  # green stink squiggles
            x = cx - 0.5 * r + i * 0.5 * r
            draw.line(
                [x, cy - 1.2 * r, x + 0.1 * r, cy - 1.35 * r, x, cy - 1.5 * r],
                fill=(60, 170, 60),
                width=w + 1,
            )
    elif face == "love":
        for x, y in eyes:
            _heart(draw, x, y, er * 1.6, (230, 40, 90))
        draw.arc([cx - 0.25 * r, my - 0.1 * r, cx + 0.25 * r, my + 0.2 * r], 20, 160, fill=INK, width=w + 1)
        _heart(draw, cx + 1.1 * r, cy - 0.9 * r, 0.22 * r, (240, 60, 110))
    else:
        raise ValueError(f"no face for emotion {face!r}")


def _heart(draw: ImageDraw.ImageDraw, x: float, y: float, s: float, fill) -> None:
    _ellipse(draw, x - 0.5 * s, y - 0.25 * s, 0.5 * s, 0.5 * s, fill=fill)
    _ellipse(draw, x + 0.5 * s, y - 0.25 * s, 0.5 * s, 0.5 * s, fill=fill)
    draw.polygon([(x - s, y - 0.1 * s), (x + s, y - 0.1 * s), (x, y + 1.1 * s)], fill=fill)


def render_sticker(
    rng: random.Random,
    size: int,
    species: str,
    colour: tuple[int, int, int],
    face_emotion: str,
    caption: str | None = None,
) -> Image.Image:
    """One sticker image (``size`` x ``size`` RGB)."""
    big = size * 2  # draw at 2x and downsample: smoother shapes
    background = tuple(int(235 + rng.random() * 20) for _ in range(3))
    img = Image.new("RGB", (big, big), background)
    draw = ImageDraw.Draw(img)
    # a big head filling most of the sticker (sticker faces are the message); modest jitter
    r = big * (0.33 + 0.05 * rng.random())
    cx = big / 2 + (rng.random() - 0.5) * big * 0.08
    cy = big / 2 + 0.05 * big + (rng.random() - 0.5) * big * 0.06
    width = max(1, big // 36)
    shade = [max(0, min(255, int(c + rng.randint(-15, 15)))) for c in colour]
    _body(draw, species, cx, cy, r, tuple(shade), width)
    _face(draw, FACE_OF.get(face_emotion, face_emotion), cx, cy, r, width)
    if caption:
        y = big * 0.04 if rng.random() < 0.5 else big * 0.84
        draw.text((big * 0.08 + rng.random() * big * 0.3, y), caption, fill=INK, font_size=int(big * 0.11))
    img = img.rotate(rng.uniform(-8, 8), resample=Image.Resampling.BILINEAR, fillcolor=background)
    return img.resize((size, size), Image.Resampling.LANCZOS)
