"""`hf:` models: any image-text-to-text model through AutoProcessor, the processor's chat template and
AutoModelForImageTextToText; batched, left-padded greedy generation. A Vittle checkpoint (one with
vittle_config.json) gets its bottleneck re-attached automatically, from a local directory or the hub.

One adapter serves every family. How a request becomes the processor's text and images is a prompt profile
(`prompt_profiles.py`): the processor's chat template by default; LLaVA's own `llava_v1` conversation and
pad-to-square preprocessing for LLaVA-1.5 checkpoints (recognised by their config, never by name); a layout of
its own for a family whose `config.model_type` needs one (PaliGemma, which has no chat template).

Model args (`--model-args`): dtype (auto | float32 | bfloat16 | float16; auto = the checkpoint's own),
device, device_map (e.g. auto), revision, trust_remote_code (only when passed), attn_implementation,
prompt_profile (auto | chat_template | llava_v1 | vicuna_v1 | image_tokens_then_prompt), chat_template (a
.jinja file or template text, for checkpoints that lack one; with prompt_profile auto it selects chat_template),
cache_dir (the hub cache).
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
from importlib.metadata import version
from itertools import groupby
from pathlib import Path
from typing import Any

import torch

from vittle_bench.errors import ConfigError
from vittle_bench.models import prompt_profiles
from vittle_bench.models.base import MODELS, Model
from vittle_bench.models.prompt_profiles import PROFILE_NAMES, TRAINED_PROFILE_FILE, select_profile
from vittle_bench.schema import Request
from vittle_bench.vittle import load_vittle_if_present
from vittle_bench.vittle.bottleneck import CONFIG_FILE, WEIGHTS_FILE

# Files that change what a checkpoint answers: weights, configs, tokenizer/vocab files, chat templates, remote code.
_CHECKPOINT_SUFFIXES = (".safetensors", ".bin", ".json", ".jinja", ".model", ".txt", ".py", ".tiktoken")
_DTYPES = ("auto", "float32", "bfloat16", "float16")
_PLACEMENT_ARGS = ("device", "device_map")  # where the weights go, not what the model answers
FINGERPRINT_VERSION = "hf/3"  # bump when the adapter changes what a model is asked (prompt layout, decoding)


def directory_fingerprint(path: Path) -> str:
    """Content hash of a local checkpoint (weights, configs, tokenizer, templates), streamed so that multi-GB
    shards are never read into memory; retrained weights therefore never hit stale cached answers. Hashed once
    per process while no file's size, modification time or inode changes."""
    # Top level only: a checkpoint's files live there; sub-folders (e.g. `tune --keep-checkpoints` states) do not
    # change what the model answers.
    files = sorted(p for p in path.glob("*") if p.is_file() and p.suffix in _CHECKPOINT_SUFFIXES)
    return _files_fingerprint(path.absolute(), tuple(
        (file.name, st.st_size, st.st_mtime_ns, st.st_ino) for file in files for st in [file.stat()]))


@functools.lru_cache(maxsize=32)
def _files_fingerprint(path: Path, files: tuple[tuple[str, int, int, int], ...]) -> str:
    h = hashlib.sha256()
    for name, *_ in files:
        h.update(name.encode())
        digest = hashlib.sha256()
        with (path / name).open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 24), b""):
                digest.update(chunk)
        h.update(digest.digest())
    return h.hexdigest()[:16]


def checkpoint_identity(name: str, source: str, model_args: dict[str, Any]) -> dict[str, Any] | None:
    """What an HFModel's fingerprint depends on, found without loading it (`Model.load_identity`): the checkpoint
    (a directory's content hash, or the commit a hub id resolves to, with what its local copy holds: a recorded
    prompt profile, a Vittle bottleneck), every model arg but the placement (a chat template file by its text),
    the versions of transformers and torch (they resolve `dtype=auto` and the generation defaults) and this
    adapter's code. None when a hub id's commit is unknown."""
    revision = None if model_args.get("revision") is None else str(model_args["revision"])
    cache_dir = model_args.get("cache_dir")
    local_only = check_checkpoint(name, source, revision, cache_dir)
    checkpoint: dict[str, Any]
    if _is_directory_spec(source):
        checkpoint = {"weights": directory_fingerprint(Path(source).expanduser())}
    else:
        commit = _hub_commit(source, revision, cache_dir, local_only)
        if commit is None:
            return None
        checkpoint = {"source": source, "commit": commit,
                      "trained_profile": _trained_profile(source, revision, cache_dir, local_only),
                      "vittle": _vittle_directory(source, revision, cache_dir, local_only) is not None}
    args = {k: v for k, v in model_args.items() if k not in _PLACEMENT_ARGS}
    if args.get("chat_template"):
        args["chat_template"] = hashlib.sha256(_read_template(str(args["chat_template"])).encode()).hexdigest()
    return {"adapter": FINGERPRINT_VERSION, "code": _adapter_code(), **checkpoint, "args": args,
            "transformers": version("transformers"), "torch": torch.__version__}


@functools.cache
def _adapter_code() -> str:
    """A hash of the code that turns a checkpoint into a fingerprint (this module and the prompt profiles), so a
    changed adapter never reuses a fingerprint recorded by the old one."""
    h = hashlib.sha256()
    for module in (__file__, prompt_profiles.__file__):
        h.update(Path(module).read_bytes())
    return h.hexdigest()[:16]


def _read_template(text: str) -> str:
    path = Path(text)
    return path.read_text() if path.suffix == ".jinja" and path.is_file() else text


def _is_directory_spec(source: str) -> bool:
    """A checkpoint directory rather than a hub id: anything on disk, or anything written as a path (a hub id
    never starts with /, ./, ../ or ~)."""
    return source.startswith(("/", "./", "../", "~")) or Path(source).exists()


@functools.cache
def _hub_problem(repo_id: str, revision: str | None) -> tuple[str | None, bool]:
    """(why the hub cannot serve the model or None, whether the hub answered at all); asked once per model."""
    from huggingface_hub import model_info
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError

    try:
        model_info(repo_id, revision=revision, timeout=10)
    except GatedRepoError:
        return "a gated model: accept its terms on the hub and log in (`hf auth login`)", True
    except RepositoryNotFoundError:
        return "no such model on the hub (a private one needs `hf auth login`)", True
    except RevisionNotFoundError:
        return f"the hub has no revision {revision!r} of it", True
    except HfHubHTTPError as exc:
        return f"the hub answered {exc.response.status_code}" if exc.response is not None else str(exc), False
    except Exception as exc:  # noqa: BLE001 - any transport failure (DNS, refused, timeout, proxy): no usable hub
        return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}", False
    return None, True


def check_checkpoint(name: str, source: str, revision: str | None = None, cache_dir: str | None = None) -> bool:
    """Fail in one line, before anything loads, when the checkpoint cannot be had. Returns whether it must be
    read from the local hub cache alone (offline, or the hub unreachable): transformers would otherwise retry
    the network for minutes before falling back to the cache."""
    if _is_directory_spec(source):
        path = Path(source).expanduser()
        if not path.is_dir():
            raise ConfigError(f"{name}: no such checkpoint directory {path}")
        if not (path / "config.json").is_file():
            raise ConfigError(f"{name}: {path} holds no config.json, so it is not a checkpoint directory")
        return False
    from huggingface_hub import is_offline_mode, try_to_load_from_cache

    try:
        cached = isinstance(try_to_load_from_cache(source, "config.json", cache_dir=cache_dir, revision=revision), str)
    except ValueError:  # huggingface_hub's HFValidationError: not an ORG/NAME id
        raise ConfigError(f"{name}: {source!r} is neither a directory nor a hub id like ORG/NAME") from None
    where = f" ({cache_dir})" if cache_dir else ""
    fetch = f"download it where the hub can be reached (`hf download {source}`) or give a checkpoint directory"
    if is_offline_mode():
        if not cached:
            raise ConfigError(f"{name} is not in the local Hugging Face cache{where} and the hub is switched off "
                              f"(HF_HUB_OFFLINE); {fetch}")
        return True
    problem, answered = _hub_problem(source, revision)
    if not answered:
        if not cached:
            raise ConfigError(f"{name} is not in the local Hugging Face cache{where} and the hub cannot be reached "
                              f"({problem}); {fetch}")
        return True
    if problem:
        raise ConfigError(f"{name}: {problem}")
    return False


def _hub_commit(source: str, revision: str | None, cache_dir: str | None, local_only: bool) -> str | None:
    """The commit a hub id resolved to (from the snapshot directory the config came from): `main` moves,
    a commit does not, so the fingerprint follows the weights actually loaded."""
    from transformers.utils import cached_file

    try:
        found = cached_file(source, "config.json", revision=revision, cache_dir=cache_dir, local_files_only=local_only)
    except (OSError, ValueError):
        return None
    if found is None:
        return None
    config = Path(found)
    return config.parent.name if config.parent.parent.name == "snapshots" else None


def _trained_profile(source: str, revision: str | None, cache_dir: str | None, local_only: bool) -> str | None:
    """The prompt profile a checkpoint records it was tuned with (TRAINED_PROFILE_FILE), if it records one."""
    from transformers.utils import cached_file

    local = Path(source)
    found = local / TRAINED_PROFILE_FILE if local.is_dir() else cached_file(
        source, TRAINED_PROFILE_FILE, revision=revision, cache_dir=cache_dir, local_files_only=local_only,
        _raise_exceptions_for_missing_entries=False)
    if found is None or not Path(found).is_file():
        return None
    profile = json.loads(Path(found).read_text()).get("prompt_profile")
    return profile if profile in PROFILE_NAMES else None


def _vittle_directory(source: str, revision: str | None, cache_dir: str | None, local_only: bool) -> Path | None:
    """Where a saved Vittle bottleneck travels with the checkpoint: the local directory, or the hub snapshot
    once its two files are fetched (None when the checkpoint has none)."""
    local = Path(source)
    if local.is_dir():
        return local if (local / CONFIG_FILE).is_file() else None
    from transformers.utils import cached_file

    found = cached_file(source, CONFIG_FILE, revision=revision, cache_dir=cache_dir, local_files_only=local_only,
                        _raise_exceptions_for_missing_entries=False)
    if found is None:
        return None
    cached_file(source, WEIGHTS_FILE, revision=revision, cache_dir=cache_dir, local_files_only=local_only)
    return Path(found).parent


def _check_model_args(name: str, dtype: str, prompt_profile: str, chat_template: str | None,
                      unknown: dict[str, Any]) -> None:
    """Reject model args this adapter does not take, or values it cannot use, before anything loads."""
    if unknown:
        raise ConfigError(f"{name}: unknown --model-args {sorted(unknown)}; hf: models take dtype, device, "
                          "device_map, revision, trust_remote_code, attn_implementation, prompt_profile, "
                          "chat_template, cache_dir")
    if dtype not in _DTYPES:
        raise ConfigError(f"{name}: dtype must be one of {', '.join(_DTYPES)}, not {dtype!r}")
    if prompt_profile not in PROFILE_NAMES:
        raise ConfigError(f"{name}: prompt_profile must be one of {', '.join(PROFILE_NAMES)}, not {prompt_profile!r}")
    if chat_template and prompt_profile not in ("auto", "chat_template"):
        raise ConfigError(f"{name}: chat_template= applies to prompt_profile=chat_template, not {prompt_profile}")


@MODELS.register("hf")
class HFModel(Model):
    """Greedy, batched generation with any `AutoModelForImageTextToText` checkpoint (hub id or directory)."""

    def __init__(self, name: str, source: str, dtype: str = "auto", device: str | None = None,
                 device_map: str | None = None, revision: str | None = None, trust_remote_code: bool = False,
                 attn_implementation: str | None = None, prompt_profile: str = "auto", chat_template: str | None = None,
                 cache_dir: str | None = None, **unknown: Any) -> None:
        _check_model_args(name, dtype, prompt_profile, chat_template, unknown)
        from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor

        revision = None if revision is None else str(revision)
        local_only = check_checkpoint(name, source, revision, cache_dir)
        if _is_directory_spec(source):
            source = str(Path(source).expanduser())
        trust = trust_remote_code is True  # only an explicit `trust_remote_code=true` runs a checkpoint's code
        common: dict[str, Any] = {"revision": revision, "trust_remote_code": trust, "cache_dir": cache_dir,
                                  "local_files_only": local_only}
        self.name = name
        self.processor = AutoProcessor.from_pretrained(source, **common)
        self.tokenizer = getattr(self.processor, "tokenizer", self.processor)
        self.tokenizer.padding_side = "left"
        if chat_template:
            self.processor.chat_template = _read_template(chat_template)
        config = AutoConfig.from_pretrained(source, **common)
        if chat_template:
            prompt_profile = "chat_template"
        elif prompt_profile == "auto":
            prompt_profile = _trained_profile(source, revision, cache_dir, local_only) or "auto"
        self.profile = select_profile(prompt_profile, config, self.processor)
        if self.profile.name == "chat_template" and not getattr(self.processor, "chat_template", None):
            raise ConfigError(f"{name}: the processor has no chat template; pass --model-args chat_template=FILE.jinja")
        extra = {"attn_implementation": attn_implementation} if attn_implementation else {}
        self.model = AutoModelForImageTextToText.from_pretrained(
            source, config=config, dtype=dtype if dtype == "auto" else getattr(torch, dtype), device_map=device_map,
            **common, **extra)
        if not device_map:
            # transformers' decorated `to` is typed as if unbound
            self.model.to(device or ("cuda" if torch.cuda.is_available() else "cpu"))  # type: ignore[arg-type]
        self.model.eval()
        vittle_dir = _vittle_directory(source, revision, cache_dir, local_only)
        self.vittle = load_vittle_if_present(self.model, vittle_dir) if vittle_dir else None
        self.generation_config = self._greedy_config()
        self.fingerprint_info = self._fingerprint_info(source, revision, cache_dir, local_only)
        self.fingerprint = hashlib.sha256(json.dumps(self.fingerprint_info, sort_keys=True).encode()).hexdigest()[:16]

    def _fingerprint_info(self, source: str, revision: str | None, cache_dir: str | None,
                          local_only: bool) -> dict[str, Any]:
        """Everything that changes what this model answers: the adapter version, the weights (a local directory's
        content hash, or the hub commit the id resolved to), dtype, prompt profile, chat template, bottleneck and
        generation settings."""
        local = Path(source)
        return {
            "adapter": FINGERPRINT_VERSION, "name": self.name, "source": None if local.is_dir() else source,
            "revision": revision if local.is_dir() else (_hub_commit(source, revision, cache_dir, local_only)
                                                         or revision or "main"),
            "weights": directory_fingerprint(local) if local.is_dir() else None,
            "dtype": str(self.model.dtype).removeprefix("torch."), "profile": self.profile.settings(),
            "chat_template": hashlib.sha256((getattr(self.processor, "chat_template", None) or "").encode()
                                            ).hexdigest()[:16],
            "vittle": self.vittle is not None, "generation": self.generation_settings(),
        }

    @classmethod
    def load(cls, name: str, **kwargs: Any) -> HFModel:
        return cls(f"hf:{name}", name, **kwargs)

    @classmethod
    def load_identity(cls, name: str, **model_args: Any) -> dict[str, Any] | None:
        return checkpoint_identity(f"hf:{name}", name, model_args)

    @staticmethod
    def validate_name(name: str, **model_args: Any) -> None:
        revision, cache_dir = model_args.get("revision"), model_args.get("cache_dir")
        check_checkpoint(f"hf:{name}", name, None if revision is None else str(revision), cache_dir)

    def _greedy_config(self) -> Any:
        """The checkpoint's generation config made greedy: sampling knobs off, everything else (repetition
        penalty, eos ids, ...) kept and recorded, since it changes greedy answers too."""
        config = copy.deepcopy(self.model.generation_config)
        config.do_sample, config.num_beams = False, 1
        config.temperature = config.top_p = config.top_k = None
        if config.pad_token_id is None:
            config.pad_token_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None \
                else self.tokenizer.eos_token_id
        return config

    def generation_settings(self) -> dict[str, Any]:
        ignored = {"transformers_version", "_from_model_config", "output_attentions", "output_hidden_states",
                   "use_cache", "max_length"}
        return {k: v for k, v in sorted(self.generation_config.to_diff_dict().items()) if k not in ignored}

    def prompt(self, request: Request) -> str:
        """The full text fed to the processor for one request (the prompt profile's)."""
        return self.profile.prompt(request)

    def processor_inputs(self, requests: list[Request]) -> Any:
        """One left-padded batch as the processor makes it from the profile's texts and images (on the CPU)."""
        texts = [self.prompt(r) for r in requests]
        images = [image for r in requests for image in self.profile.images(r.images)]
        inputs = self.processor(text=texts, images=images or None, padding=True, return_tensors="pt")
        inputs.pop("labels", None)  # PaliGemma's processor builds training labels; generation must not see them
        return inputs

    @torch.inference_mode()
    def _generate_group(self, requests: list[Request], max_new_tokens: int) -> list[str]:
        inputs = self.processor_inputs(requests).to(self.model.device)
        if "pixel_values" in inputs and inputs["pixel_values"].is_floating_point():
            inputs["pixel_values"] = inputs["pixel_values"].to(self.model.dtype)
        config = copy.copy(self.generation_config)
        config.max_new_tokens = max_new_tokens
        out = self.model.generate(**inputs, generation_config=config)
        new_tokens = out[:, inputs["input_ids"].shape[1]:]
        return [text.strip() for text in self.processor.batch_decode(new_tokens, skip_special_tokens=True)]

    def generate(self, requests: list[Request]) -> list[str]:
        """Greedy answers in request order. Requests are grouped by max_new_tokens and by whether they carry
        images (processors reject batches mixing the two); each group is one left-padded batch."""
        answers: dict[int, str] = {}
        order = sorted(range(len(requests)), key=lambda i: (requests[i].max_new_tokens, bool(requests[i].images)))
        for (max_new, _), group in groupby(order, key=lambda i: (requests[i].max_new_tokens, bool(requests[i].images))):
            indices = list(group)
            answers.update(zip(indices, self._generate_group([requests[i] for i in indices], max_new)))
        return [answers[i] for i in range(len(requests))]
