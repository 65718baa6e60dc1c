"""Model cards: one per weight file, read from the data file ``cards.json`` shipped in the package.

A card names a weight file and says what it is (variant, scale, purpose, licence, origin,
digest). Names carry versions: ``lia-photo-x4@2`` pins version 2, ``lia-photo-x4`` is the
latest. Adding a model is one entry in ``cards.json``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources

from ..errors import WeightsError

__all__ = [
    "PURPOSES",
    "ModelCard",
    "ALL_CARDS",
    "CARDS",
    "get_card",
    "card_for_file",
    "default_model_name",
]

#: What a model is made for: ``clean`` (bicubic-downscaled input, the benchmark protocol)
#: or ``photo`` (real photos: noise, blur, compression).
PURPOSES = ("clean", "photo")


@dataclass(frozen=True)
class ModelCard:
    """One named weight file.

    ``file``: the upstream file name (official) or the file name in the package's
    weights folder (ours). ``url``/``sha256``: where the upstream file comes from and its
    digest; None for weights that ship inside the package. ``default``: the model used
    for its ``purpose`` and ``scale`` when none is named.
    """

    name: str
    variant: str
    scale: int
    file: str
    url: str | None
    licence: str
    sha256: str | None
    description: str
    version: int = 1
    purpose: str = "clean"
    tags: tuple[str, ...] = field(default=())
    default: bool = False
    clean_endpoint: str | None = None
    denoise: float = 1.0

    @property
    def embedded(self) -> bool:
        """True for weights that ship with lia-upscale (no download)."""
        return self.url is None

    @property
    def pinned(self) -> str:
        """The name with its version, ``name@version``."""
        return f"{self.name}@{self.version}"


def _load() -> tuple[ModelCard, ...]:
    data = json.loads(resources.files(__package__).joinpath("cards.json").read_text(encoding="utf-8"))
    cards = []
    for entry in data["cards"]:
        entry = {**entry, "tags": tuple(entry.get("tags", ()))}
        card = ModelCard(**entry)
        if card.purpose not in PURPOSES or "@" in card.name:
            raise WeightsError(f"cards.json: bad card {card.name!r} (purpose {card.purpose!r})")
        if not 0 <= card.denoise <= 1 or (card.denoise != 1 and card.clean_endpoint is None):
            raise WeightsError(f"cards.json: bad card {card.pinned!r} (denoise {card.denoise!r} "
                               f"with clean endpoint {card.clean_endpoint!r})")
        cards.append(card)
    pinned = [c.pinned for c in cards]
    defaults = [(c.purpose, c.scale) for c in cards if c.default]
    if len(set(pinned)) != len(pinned) or len(set(defaults)) != len(defaults):
        raise WeightsError("cards.json: a name@version or a (purpose, scale) default appears twice")
    return tuple(cards)


#: Every card of every version, in file order.
ALL_CARDS: tuple[ModelCard, ...] = _load()
#: The latest version of each model by its bare name, in file order.
CARDS: dict[str, ModelCard] = {}
for _card in ALL_CARDS:
    if _card.name not in CARDS or _card.version > CARDS[_card.name].version:
        CARDS[_card.name] = _card
_PINNED = {card.pinned: card for card in ALL_CARDS}


def get_card(name: str) -> ModelCard:
    """The card called ``name`` (the latest version) or ``name@version``; else WeightsError listing the known ones."""
    card = _PINNED.get(name) if "@" in name else CARDS.get(name)
    if card is None:
        raise WeightsError(f"unknown model {name!r}; known models: {', '.join(CARDS)}")
    return card


def card_for_file(file_name: str) -> ModelCard | None:
    """The downloadable card whose upstream file is called ``file_name``, if any."""
    for card in ALL_CARDS:
        if not card.embedded and card.file == file_name:
            return card
    return None


def default_model_name(scale: int, purpose: str = "clean") -> str:
    """Name of the default model for ``purpose`` (clean or photo) at ``scale`` (2 or 4)."""
    for card in CARDS.values():
        if card.default and card.purpose == purpose and card.scale == scale:
            return card.name
    scales = sorted({c.scale for c in CARDS.values() if c.default and c.purpose == purpose})
    raise WeightsError(
        f"no default {purpose} model for x{scale} (default scales: {', '.join(f'x{s}' for s in scales) or 'none'})"
    )
