#!/usr/bin/env python3
"""Write the fuzzers' seed inputs into fuzz/corpus/<target>/seed-*: small valid photos of every
format and layout the loader reads, small weight files in the three formats PyTorch and
safetensors write (made here without torch, byte-for-byte in torch.save's layout), and the
code-execution pickles and views the reader must refuse. `seed-ok-*` files must be accepted
by the target and every other `seed-*` file refused; the replay test
(crates/train/tests/fuzz_corpus.rs) checks that. Needs Pillow
(scripts/setup-venv.sh installs it): .venv/bin/python fuzz/make_seeds.py
"""
import collections
import io
import json
import pathlib
import pickle
import struct
import sys
import types
import zipfile

from PIL import Image

CORPUS = pathlib.Path(__file__).resolve().parent / "corpus"


def write(target, name, data):
    folder = CORPUS / target
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(data)


# ---- photos -------------------------------------------------------------------------------
def photo(mode, size=(12, 9)):
    image = Image.new("RGB", size)
    image.putdata([((x * 21) % 256, (y * 28) % 256, 90) for y in range(size[1]) for x in range(size[0])])
    return image.convert(mode)


def encoded(image, fmt, **options):
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def photos():
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to view
    yield "rgb.png", encoded(photo("RGB"), "PNG")
    yield "rgba.png", encoded(photo("RGBA"), "PNG")
    yield "gray.png", encoded(photo("L"), "PNG")
    yield "palette.png", encoded(photo("P"), "PNG")
    yield "gray16.png", encoded(photo("L").convert("I;16"), "PNG")
    yield "baseline.jpg", encoded(photo("RGB"), "JPEG", quality=80)
    yield "progressive.jpg", encoded(photo("RGB"), "JPEG", quality=80, progressive=True)
    yield "gray.jpg", encoded(photo("L"), "JPEG")
    yield "exif-rotated.jpg", encoded(photo("RGB"), "JPEG", exif=exif.tobytes())
    yield "rgb.bmp", encoded(photo("RGB"), "BMP")
    yield "lossy.webp", encoded(photo("RGB"), "WEBP", quality=70)
    yield "lossless.webp", encoded(photo("RGBA"), "WEBP", lossless=True)


# ---- weight files -------------------------------------------------------------------------
# Stand-ins for the torch globals a state-dict pickle names, so that pickle writes
# `torch._utils._rebuild_tensor_v2` and `torch.FloatStorage` exactly as torch.save does.
torch = types.ModuleType("torch")
torch_utils = types.ModuleType("torch._utils")
sys.modules["torch"], sys.modules["torch._utils"] = torch, torch_utils
STORAGES = {"f": "FloatStorage", "d": "DoubleStorage", "e": "HalfStorage", "q": "LongStorage"}
for name in list(STORAGES.values()) + ["BFloat16Storage"]:
    setattr(torch, name, type(name, (), {"__module__": "torch"}))


def _rebuild_tensor_v2(*args):
    raise AssertionError("never called: only pickled")


_rebuild_tensor_v2.__module__ = "torch._utils"
torch_utils._rebuild_tensor_v2 = _rebuild_tensor_v2


class Storage:
    def __init__(self, key, kind, raw, numel):
        self.key, self.kind, self.raw, self.numel = key, kind, raw, numel


class Tensor:
    def __init__(self, storage, shape, stride=None):
        self.storage, self.shape, self.stride = storage, shape, stride

    def __reduce_ex__(self, protocol):
        stride, step = [], 1
        for size in reversed(self.shape):
            stride.insert(0, step)
            step *= size
        stride = self.stride if self.stride is not None else stride
        args = (self.storage, 0, tuple(self.shape), tuple(stride), False, collections.OrderedDict())
        return (_rebuild_tensor_v2, args)


def state_dict(with_int64):
    """A tiny VGG-like state dict with every float type the reader converts (and an int64
    tensor, which it refuses, if `with_int64`)."""
    tensors = collections.OrderedDict()
    specs = [
        ("features.0.weight", [2, 3, 3, 3], "f", "FloatStorage"),
        ("features.0.bias", [2], "f", "FloatStorage"),
        ("features.2.weight", [2, 2, 1, 1], "e", "HalfStorage"),
        ("features.2.bias", [2], "d", "DoubleStorage"),
        ("classifier.weight", [1, 2], "bf16", "BFloat16Storage"),
        ("steps", [1], "q", "LongStorage"),
    ][: 6 if with_int64 else 5]
    for index, (key, shape, kind, storage) in enumerate(specs):
        numel = 1
        for size in shape:
            numel *= size
        values = [((i * 7) % 11 - 5) / 8 for i in range(numel)]
        if kind == "bf16":
            raw = b"".join(struct.pack("<f", v)[2:] for v in values)
        elif kind == "q":
            raw = struct.pack(f"<{numel}q", *[int(v * 8) for v in values])
        else:
            raw = struct.pack(f"<{numel}{kind}", *values)
        tensors[key] = Tensor(Storage(str(index), getattr(torch, storage), raw, numel), shape)
    return tensors


class StatePickler(pickle.Pickler):
    def __init__(self, file, storages):
        super().__init__(file, protocol=2)
        self.storages = storages

    def persistent_id(self, obj):
        if isinstance(obj, Storage):
            self.storages[obj.key] = obj
            return ("storage", obj.kind, obj.key, "cpu", obj.numel)
        return None


def expand_view():
    """features.0.weight as a stride-0 view of one float declaring 40000 x 40000 elements
    (6.4 GB if materialised) in a 1 KB file: must be refused by shape before it is read."""
    storage = Storage("0", torch.FloatStorage, struct.pack("<f", 0.5), 1)
    return collections.OrderedDict([("features.0.weight", Tensor(storage, [40000, 40000], [0, 0]))])


def pth_zip(with_int64, tensors=None):
    storages, data = {}, io.BytesIO()
    StatePickler(data, storages).dump(tensors if tensors is not None else state_dict(with_int64))
    out = io.BytesIO()
    entries = [("archive/data.pkl", data.getvalue()), ("archive/byteorder", b"little")]
    entries += [(f"archive/data/{key}", storage.raw) for key, storage in storages.items()]
    entries += [("archive/version", b"3\n")]
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as archive:
        for name, payload in entries:
            # A fixed timestamp, so the seeds are the same bytes on every run.
            archive.writestr(zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0)), payload)
    return out.getvalue()


def pth_legacy(with_int64):
    out, storages = io.BytesIO(), {}
    for value in (
        0x1950A86A20F9469CFC6C,
        1001,
        {"protocol_version": 1001, "little_endian": True, "type_sizes": {"short": 2, "int": 4, "long": 4}},
    ):
        pickle.dump(value, out, protocol=2)
    StatePickler(out, storages).dump(state_dict(with_int64))
    pickle.dump(sorted(storages), out, protocol=2)
    for key in sorted(storages):
        out.write(struct.pack("<q", storages[key].numel) + storages[key].raw)
    return out.getvalue()


def safetensors(with_int64):
    header, blobs, offset = {}, [], 0
    dtypes = {"f": "F32", "d": "F64", "e": "F16", "bf16": "BF16", "q": "I64"}
    kinds = {"FloatStorage": "f", "DoubleStorage": "d", "HalfStorage": "e", "BFloat16Storage": "bf16",
             "LongStorage": "q"}
    for key, tensor in state_dict(with_int64).items():
        raw = tensor.storage.raw
        header[key] = {"dtype": dtypes[kinds[tensor.storage.kind.__name__]], "shape": tensor.shape,
                       "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(blobs)


def payload_pickle():
    """{"features.0.weight": os.system("true")} as GLOBAL + REDUCE: must be refused."""
    key = b"X" + struct.pack("<I", 17) + b"features.0.weight"
    call = b"cposix\nsystem\nX" + struct.pack("<I", 4) + b"true\x85R"
    return b"\x80\x02}" + key + call + b"s."


def main():
    for name, data in photos():
        write("image_bytes", f"seed-ok-{name}", data)
    for name, make in [("safetensors", safetensors), ("zip.pth", pth_zip), ("legacy.pth", pth_legacy)]:
        write("weight_file_bytes", f"seed-ok-floats.{name}", make(False))
        # With an int64 tensor, refused when read: not `ok`.
        write("weight_file_bytes", f"seed-int64.{name}", make(True))
    write("weight_file_bytes", "seed-payload-os-system.pth", payload_pickle())
    write("weight_file_bytes", "seed-expand-view.zip.pth", pth_zip(False, expand_view()))
    for config in sorted((CORPUS.parent.parent / "configs").glob("*.toml")):
        write("config_text", f"seed-ok-{config.name}", config.read_bytes())


if __name__ == "__main__":
    main()
