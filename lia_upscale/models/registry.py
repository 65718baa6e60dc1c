"""Named models: a card per weight file, where files live, and installing official ones."""

from __future__ import annotations

import hashlib
import http.client
import importlib.resources
import importlib.util
import os
import tempfile
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import WeightsError
from .detect import detect_config
from .weightfile import read_pth, save_weights

__all__ = [
    "ModelCard",
    "CARDS",
    "get_card",
    "card_for_file",
    "embedded_weights_dir",
    "user_weights_dir",
    "resolve",
    "default_model_name",
    "list_models",
    "install",
    "ProgressCallback",
]

#: ``on_progress(file_name, bytes_done, bytes_total_or_None)`` while reading or downloading.
ProgressCallback = Callable[[str, int, int | None], None]

_UPSTREAM = "https://github.com/icandle/PlainUSR/raw/main/2024_PlainUSR_ACCV/pretrained_model/"
_CHUNK = 1 << 16
_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class ModelCard:
    """One named weight file.

    ``file``: the upstream file name (official) or the embedded file name (ours).
    ``url``/``sha256``: where the upstream file comes from and its digest; None for the
    embedded defaults, which ship inside the package.
    """

    name: str
    variant: str
    scale: int
    file: str
    url: str | None
    licence: str
    sha256: str | None
    description: str

    @property
    def embedded(self) -> bool:
        """True for weights that ship with lia-upscale (no download)."""
        return self.url is None


# (variant, letter in the upstream file name, name suffix, long name)
_OFFICIAL_SIZES = (
    ("U", "U", "u", "ultra"),
    ("T", "T", "t", "tiny"),
    ("S", "S", "s", "small"),
    ("M", "M", "m", "medium"),
    ("base", "", "base", "base"),
    ("L", "L", "l", "large"),
)
# SHA-256 of the upstream files, as published in icandle/PlainUSR.
_OFFICIAL_SHA256 = {
    "PlainUSRL_Rep_x2.pth": "695596b258962f2e17cea71ff94cfa64067f061c748546f0d1d4b3aa46f520c2",
    "PlainUSRL_Rep_x4.pth": "050a1d20f2046d01eadab9efd8918a5d9ef705586faab16192d42b897d99ec4e",
    "PlainUSRM_Rep_x2.pth": "f83f3afee4467e7a239e88b85cb0849cd627d06650bc71dd67370d9bc7c87d54",
    "PlainUSRM_Rep_x4.pth": "5f277afeb3dcfc8014a1ae2fb8f79286147f670e68d43fc9d6ccbc3a9650d3d8",
    "PlainUSRS_Rep_x2.pth": "7517940668d25eb28fbc27751cd9e42258ab0277e474b65ab782bb61cac7e81d",
    "PlainUSRS_Rep_x4.pth": "874b274f27c0174df744fd22eec9dea907f484014100479f822e609dda86f919",
    "PlainUSRT_Rep_x2.pth": "65af9f10f65ec806849bc5eaffadfa0e39101f7a6d7d8f394b13090fce4ae1d4",
    "PlainUSRT_Rep_x4.pth": "43f254de7f5f349256aaf7e5b40484d2c9fb3573ca1ef89478c5dd11b86331dc",
    "PlainUSRU_Rep_x2.pth": "8c6c9f82bceaab6b84bacad643443c367bee93e9ecdabb7c7e4cc595dc82df81",
    "PlainUSRU_Rep_x4.pth": "d64a40ab30019a20a34bb89dd4c6b5d0ab8b16911c65c63ce31b842f4079d15a",
    "PlainUSR_Rep_x2.pth": "2fdda1ffebfb07352e11651f1814b74bf36446aeb2b9541bea55d0b94d55e52e",
    "PlainUSR_Rep_x4.pth": "afdf923f7bb2e1904d26673653466bd11d809d2daf19a2c7bd6a38391a70efc2",
}


def _official_cards() -> list[ModelCard]:
    cards = []
    for variant, letter, suffix, long in _OFFICIAL_SIZES:
        for scale in (2, 4):
            file = f"PlainUSR{letter}_Rep_x{scale}.pth"
            cards.append(
                ModelCard(
                    name=f"plainusr-{suffix}-x{scale}",
                    variant=variant,
                    scale=scale,
                    file=file,
                    url=_UPSTREAM + file,
                    licence="MIT",
                    sha256=_OFFICIAL_SHA256[file],
                    description=f"PlainUSR-{long} x{scale}, official deploy weights (ACCV 2024)",
                )
            )
    return cards


def _embedded_cards() -> list[ModelCard]:
    return [
        ModelCard(
            name=f"lia-u-x{scale}",
            variant="U",
            scale=scale,
            file=f"lia-u-x{scale}.safetensors",
            url=None,
            licence="MIT; trained on research-use data",
            sha256=None,
            description=(
                f"PlainUSR-ultra x{scale} trained by lia-upscale on BSD200 (BSDS: non-commercial "
                "research and education) and T91 (research); the built-in default, see weights/README.md"
            ),
        )
        for scale in (2, 4)
    ]


#: Every known model by name: the embedded defaults first, then the official checkpoints.
CARDS: dict[str, ModelCard] = {c.name: c for c in _embedded_cards() + _official_cards()}


def get_card(name: str) -> ModelCard:
    """The card called ``name``; an unknown name raises WeightsError listing the known ones."""
    try:
        return CARDS[name]
    except KeyError:
        raise WeightsError(f"unknown model {name!r}; known models: {', '.join(CARDS)}") from None


def card_for_file(file_name: str) -> ModelCard | None:
    """The official card whose upstream file is called ``file_name``, if any."""
    for card in CARDS.values():
        if not card.embedded and card.file == file_name:
            return card
    return None


def embedded_weights_dir() -> Path:
    """Folder of the weights that ship with lia-upscale.

    ``$LIA_UPSCALE_EMBEDDED`` if set; else the package ``lia_upscale.weights`` (an
    installed wheel); else ``weights/`` at the top of a source checkout.
    """
    override = os.environ.get("LIA_UPSCALE_EMBEDDED")
    if override:
        return Path(override)
    try:
        resource = importlib.resources.files("lia_upscale.weights")
    except (ModuleNotFoundError, TypeError):
        resource = None
    if isinstance(resource, Path):
        return resource
    if resource is not None:
        # a namespace package (no __init__.py): the first folder it spans
        spec = importlib.util.find_spec("lia_upscale.weights")
        for location in (spec.submodule_search_locations or []) if spec else []:
            return Path(location)
    return Path(__file__).resolve().parents[2] / "weights"


def user_weights_dir() -> Path:
    """Folder of installed weights.

    ``$LIA_UPSCALE_HOME/weights`` if set; else ``$XDG_DATA_HOME/lia-upscale/weights``;
    else ``~/.local/share/lia-upscale/weights``. It need not exist yet.
    """
    home = os.environ.get("LIA_UPSCALE_HOME")
    if home:
        return Path(home) / "weights"
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".local" / "share"
    return base / "lia-upscale" / "weights"


def _path_of(card: ModelCard) -> Path:
    if card.embedded:
        return embedded_weights_dir() / card.file
    return user_weights_dir() / f"{card.name}.safetensors"


def resolve(name: str) -> Path:
    """The weight file of the model called ``name``; raises WeightsError if it is absent.

    Unknown names list the known ones; an official model that is not installed says how
    to install it.
    """
    card = get_card(name)
    path = _path_of(card)
    if path.is_file():
        return path
    if card.embedded:
        raise WeightsError(
            f"the built-in weights {name} are missing from this installation "
            f"(looked for {path}); pass a weight file or an installed model name instead"
        )
    raise WeightsError(
        f"model {name} is not installed; install it with: lia-upscale weights install {card.url}"
    )


def default_model_name(scale: int) -> str:
    """Name of the built-in model for ``scale`` (2 or 4)."""
    for card in CARDS.values():
        if card.embedded and card.scale == scale:
            return card.name
    scales = sorted({c.scale for c in CARDS.values() if c.embedded})
    raise WeightsError(
        f"no built-in model for x{scale} (built-in scales: {', '.join(f'x{s}' for s in scales)})"
    )


def list_models() -> list[tuple[ModelCard, Path | None]]:
    """Every card with the path of its weight file, or None where it is not present."""
    out = []
    for card in CARDS.values():
        path = _path_of(card)
        out.append((card, path if path.is_file() else None))
    return out


def _hash_file(path: Path, label: str, on_progress: ProgressCallback | None) -> str:
    digest = hashlib.sha256()
    done = 0
    try:
        total = path.stat().st_size
        with open(path, "rb") as f:
            while chunk := f.read(_CHUNK):
                digest.update(chunk)
                done += len(chunk)
                if on_progress is not None:
                    on_progress(label, done, total)
    except OSError as e:
        raise WeightsError(f"{path}: cannot read ({e.strerror or e})") from None
    return digest.hexdigest()


def _install_verified(card: ModelCard, src: Path, digest: str, dest: Path) -> Path:
    """Check ``digest`` against the card, then convert ``src`` into the weights folder."""
    if digest != card.sha256:
        raise WeightsError(
            f"{card.file}: sha256 {digest} does not match the published {card.sha256}; "
            "the file is damaged or not the official one"
        )
    state = read_pth(src)
    try:
        config, variant = detect_config({k: tuple(v.shape) for k, v in state.items()})
    except WeightsError as e:
        raise WeightsError(f"{card.file}: {e}") from None
    if (variant, config.scale) != (card.variant, card.scale):
        raise WeightsError(
            f"{card.file}: holds variant {variant} x{config.scale}, "
            f"the card says {card.variant} x{card.scale}"
        )
    target = dest / f"{card.name}.safetensors"
    save_weights(target, state, card.variant, card.scale, extra=_provenance(card))
    return target


def _provenance(card: ModelCard) -> dict[str, str]:
    """Metadata recording where installed weights came from."""
    return {"name": card.name, "origin": card.url or "", "origin_sha256": card.sha256 or ""}


def _download(url: str, card: ModelCard, dest: Path, on_progress: ProgressCallback | None) -> Path:
    """Fetch ``url`` to a temporary file in ``dest``, then check and convert it."""
    dest.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=dest, prefix=f".{card.file}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        digest = hashlib.sha256()
        done = 0
        try:
            with (
                os.fdopen(fd, "wb") as out,
                urllib.request.urlopen(url, timeout=_TIMEOUT_S) as resp,
            ):
                length = resp.headers.get("Content-Length")
                total = int(length) if length and length.isdecimal() else None
                while chunk := resp.read(_CHUNK):
                    out.write(chunk)
                    digest.update(chunk)
                    done += len(chunk)
                    if on_progress is not None:
                        on_progress(card.file, done, total)
        except (OSError, http.client.HTTPException, ValueError) as e:
            raise WeightsError(f"download of {url} failed: {e}") from None
        if total is not None and done != total:
            raise WeightsError(f"download of {url} was cut short: {done} of {total} bytes")
        return _install_verified(card, tmp, digest.hexdigest(), dest)
    finally:
        tmp.unlink(missing_ok=True)


def _card_for_source(file_name: str, source: str) -> ModelCard:
    card = card_for_file(file_name)
    if card is None:
        known = ", ".join(c.file for c in CARDS.values() if not c.embedded)
        raise WeightsError(f"{source}: unknown weight file name {file_name!r}; known: {known}")
    return card


def install(
    source: str | os.PathLike[str], *, on_progress: ProgressCallback | None = None
) -> list[Path]:
    """Install official weights into :func:`user_weights_dir` as ``<name>.safetensors``.

    ``source``: a local file, a local folder (every file in it named like an official
    checkpoint; others are ignored), an http(s) URL, or an official model name (fetched
    from its card's URL). The card is chosen by file name; the sha256 is checked against
    the card before anything is converted. Files are written atomically; a mismatch, a
    failed or truncated download leaves nothing behind and raises WeightsError.
    ``on_progress(file_name, bytes_done, bytes_total)`` is called while reading.
    Returns the installed paths.
    """
    dest = user_weights_dir()
    text = os.fspath(source)
    if text in CARDS:
        card = CARDS[text]
        if card.embedded or card.url is None:
            raise WeightsError(f"{text} ships with lia-upscale and needs no install")
        text = card.url
    if text.startswith(("http://", "https://")):
        file_name = urllib.parse.unquote(urllib.parse.urlsplit(text).path.rsplit("/", 1)[-1])
        return [_download(text, _card_for_source(file_name, text), dest, on_progress)]

    path = Path(text).expanduser()
    if path.is_dir():
        matches = [(p, card_for_file(p.name)) for p in sorted(path.iterdir()) if p.is_file()]
        found = [(p, c) for p, c in matches if c is not None]
        if not found:
            raise WeightsError(
                f"{path}: no official PlainUSR checkpoint "
                "(e.g. PlainUSRU_Rep_x4.pth) in this folder"
            )
        installed = []
        for file, card in found:
            dest.mkdir(parents=True, exist_ok=True)
            digest = _hash_file(file, card.file, on_progress)
            installed.append(_install_verified(card, file, digest, dest))
        return installed
    if path.is_file():
        card = _card_for_source(path.name, text)
        dest.mkdir(parents=True, exist_ok=True)
        return [_install_verified(card, path, _hash_file(path, card.file, on_progress), dest)]
    raise WeightsError(f"{text}: no such file, folder or URL")
