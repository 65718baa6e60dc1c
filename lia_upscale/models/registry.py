"""Named models: a card per weight file, where files live, and installing official ones."""

from __future__ import annotations

import hashlib
import http.client
import importlib.resources
import importlib.util
import os
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path

from ..errors import WeightsError, byte_count
from ..files import StagedFile, remove_stale_temporaries
from .cards import ALL_CARDS, CARDS, ModelCard, card_for_file, get_card
from .detect import detect_config
from .pthfile import read_pth
from .weightfile import save_weights

__all__ = [
    "embedded_weights_dir",
    "user_weights_dir",
    "resolve",
    "resolve_clean_endpoint",
    "list_models",
    "install",
    "ProgressCallback",
]

#: ``on_progress(file_name, bytes_done, bytes_total_or_None)`` while reading or downloading.
ProgressCallback = Callable[[str, int, int | None], None]

_CHUNK = 1 << 16
_TIMEOUT_S = 60.0  # for any one network read
#: Default limit on a whole download, in seconds; ``$LIA_UPSCALE_DOWNLOAD_DEADLINE`` overrides it.
DOWNLOAD_DEADLINE_S = 1800.0
#: The most bytes a download may bring (the official checkpoints are under 3 MiB): a
#: server that never stops sending is cut off here, or at its own Content-Length.
MAX_DOWNLOAD_BYTES = 64 * 2**20


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
    return user_weights_dir() / f"{card.name if card.version == 1 else card.pinned}.safetensors"


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


def resolve_clean_endpoint(card: ModelCard) -> Path:
    """The weight file of the clean network ``card``'s photo model was fine-tuned from (the
    far end of its denoise strength); WeightsError if it has none or the file is absent."""
    if card.clean_endpoint is None:
        with_end = ", ".join(c.pinned for c in ALL_CARDS if c.clean_endpoint is not None)
        raise WeightsError(f"model {card.pinned} has no clean endpoint, so it takes no denoise strength "
                           f"(models that do: {with_end})")
    path = embedded_weights_dir() / card.clean_endpoint
    if not path.is_file():
        raise WeightsError(f"the clean endpoint of {card.pinned} is missing from this installation "
                           f"(looked for {path})")
    return path


def list_models() -> list[tuple[ModelCard, Path | None]]:
    """Every card with the path of its weight file, or None where it is not present."""
    out = []
    for card in ALL_CARDS:
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
    save_weights(target, state, card.variant, card.scale, extra=_provenance(card), overwrite=True)
    return target


def _provenance(card: ModelCard) -> dict[str, str]:
    """Metadata recording where installed weights came from."""
    return {"name": card.name, "origin": card.url or "", "origin_sha256": card.sha256 or ""}


def _deadline(deadline_s: float | None) -> float:
    """The download deadline in seconds: the argument, else the environment, else the default."""
    if deadline_s is None:
        text = os.environ.get("LIA_UPSCALE_DOWNLOAD_DEADLINE", "").strip()
        try:
            deadline_s = float(text) if text else DOWNLOAD_DEADLINE_S
        except ValueError:
            raise WeightsError(f"LIA_UPSCALE_DOWNLOAD_DEADLINE={text!r} is not a number of seconds") from None
    if not deadline_s > 0 or deadline_s == float("inf"):
        raise WeightsError(f"the download deadline must be a positive number of seconds, not {deadline_s}")
    return deadline_s


def _make_folder(dest: Path) -> None:
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise WeightsError(f"cannot create the weights folder {dest} ({e.strerror or e})") from None


def _download(
    url: str, card: ModelCard, dest: Path, on_progress: ProgressCallback | None, deadline_s: float
) -> Path:
    """Fetch ``url`` to a temporary file in ``dest`` within ``deadline_s``, then check and convert it."""
    _make_folder(dest)
    end = time.monotonic() + deadline_s
    remove_stale_temporaries(dest, dest / card.file)  # what a killed install's download left
    try:  # a temporary file of the one writer: locked and marked, so a killed download is swept
        staged = StagedFile(dest / card.file)
    except OSError as e:
        raise WeightsError(f"cannot write in the weights folder {dest} ({e.strerror or e})") from None
    out = staged.fp
    try:
        digest = hashlib.sha256()
        done = 0
        try:
            with urllib.request.urlopen(url, timeout=min(_TIMEOUT_S, deadline_s)) as resp:
                length = resp.headers.get("Content-Length")
                total = int(length) if length and length.isdecimal() and len(length) < 20 else None
                cap = MAX_DOWNLOAD_BYTES if total is None else total
                if cap > MAX_DOWNLOAD_BYTES:
                    raise WeightsError(f"download of {url} announces {byte_count(cap)}, more than any PlainUSR "
                                       f"checkpoint ({byte_count(MAX_DOWNLOAD_BYTES)} at most); refused")
                while chunk := resp.read1(_CHUNK):  # what has arrived: a trickle still meets the deadline
                    if time.monotonic() > end:
                        raise WeightsError(f"download of {url} exceeded {deadline_s:g} s")
                    if done + len(chunk) > cap:
                        raise WeightsError(f"download of {url} sent more than {byte_count(cap)}"
                                           f"{'' if total is None else ' (its stated size)'}; stopped")
                    out.write(chunk)
                    digest.update(chunk)
                    done += len(chunk)
                    if on_progress is not None:
                        on_progress(card.file, done, total)
        except (OSError, http.client.HTTPException, ValueError) as e:
            raise WeightsError(f"download of {url} failed: {e}") from None
        if total is not None and done != total:
            raise WeightsError(f"download of {url} was cut short: {done} of {total} bytes")
        out.flush()
        return _install_verified(card, staged.temporary, digest.hexdigest(), dest)
    finally:
        staged.discard()


def _card_for_source(file_name: str, source: str) -> ModelCard:
    card = card_for_file(file_name)
    if card is None:
        known = ", ".join(c.file for c in CARDS.values() if not c.embedded)
        raise WeightsError(f"{source}: unknown weight file name {file_name!r}; known: {known}")
    return card


def install(
    source: str | os.PathLike[str],
    *,
    on_progress: ProgressCallback | None = None,
    deadline_s: float | None = None,
) -> list[Path]:
    """Install official weights into :func:`user_weights_dir` as ``<name>.safetensors``.

    ``source``: a local file, a local folder (every file in it named like an official
    checkpoint; others are ignored), an http(s) URL, or an official model name (fetched
    from its card's URL). The card is chosen by file name; the sha256 is checked against
    the card before anything is converted. Files are written atomically; a mismatch, a
    failed or truncated download leaves nothing behind and raises WeightsError.
    ``on_progress(file_name, bytes_done, bytes_total)`` is called while reading. A download
    that takes longer than ``deadline_s`` (default: ``$LIA_UPSCALE_DOWNLOAD_DEADLINE``, else
    :data:`DOWNLOAD_DEADLINE_S`) is abandoned with a WeightsError. Returns the installed paths.
    """
    dest = user_weights_dir()
    text = os.fspath(source)
    if text in CARDS or text.split("@", 1)[0] in CARDS:
        card = get_card(text)
        if card.embedded or card.url is None:
            raise WeightsError(f"{text} ships with lia-upscale and needs no install")
        text = card.url
    if text.startswith(("http://", "https://")):
        file_name = urllib.parse.unquote(urllib.parse.urlsplit(text).path.rsplit("/", 1)[-1])
        return [_download(text, _card_for_source(file_name, text), dest, on_progress, _deadline(deadline_s))]

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
            _make_folder(dest)
            digest = _hash_file(file, card.file, on_progress)
            installed.append(_install_verified(card, file, digest, dest))
        return installed
    if path.is_file():
        card = _card_for_source(path.name, text)
        _make_folder(dest)
        return [_install_verified(card, path, _hash_file(path, card.file, on_progress), dest)]
    raise WeightsError(f"{text}: no such file, folder or URL")
