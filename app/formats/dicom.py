"""DICOM files (radiology) read with pydicom and its pylibjpeg decoders: uncompressed (little, big endian,
implicit, deflated), JPEG baseline and extended, JPEG-LS, JPEG 2000 and RLE.

One image per file, whose frames are its planes; single-frame files of one series are joined into one image
by the ingest (app/ingest/series.py), ordered by `slice_position`. Its values are the modality values (the
Modality LUT: RescaleSlope and RescaleIntercept applied, so a CT's are Hounsfield units); the file's first
VOI window (WindowCenter, WindowWidth) is its default display. Every data element is harvested under its
DICOM keyword, but identifying attributes are left out and instance UIDs replaced by pseudonyms unless the
site keeps patient data (app/formats/dicom_confidentiality.py).
"""

from __future__ import annotations

import math
import re
import secrets
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pyvips

from app.exceptions import FormatError
from app.formats.base import Plane, Reader, check_size
from app.formats.dicom_confidentiality import is_instance_uid, is_patient_data, pseudonym
from app.store.records import HeaderValue

MAGIC = b"DICM"
MAGIC_OFFSET = 128
_BINARY_VRS = frozenset({"OB", "OW", "OF", "OD", "OL", "OV", "UN"})
_SMALL_BINARY = 1024  # bytes: larger binary values (pixel data, overlays, LUT data) are not catalogued
_MAX_TEXT = 2000  # characters kept of one text value
_MAX_ELEMENTS = 3000  # catalogued elements of one file, sequences included
_MAX_DEPTH = 3  # nested sequences flattened this deep
_MAX_ITEMS = 20  # items flattened of one sequence
_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
_UNDEFINED_LENGTH = 0xFFFFFFFF
_VIPS_FORMATS = {"uint8": "uchar", "int8": "char", "uint16": "ushort", "int16": "short", "uint32": "uint",
                 "int32": "int", "float32": "float", "float64": "double"}
_DATE = re.compile(r"(\d{4})\.?(\d{2})\.?(\d{2})")
_TIME = re.compile(r"(\d{2})(?::?(\d{2})(?::?(\d{2})(?:\.(\d{1,6}))?)?)?")
_DATETIME = re.compile(r"(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(?:\.(\d{1,6}))?([+-]\d{4})?")


class DicomReader(Reader):
    format = "dicom"
    OPTIONS = ("keep_patient_data", "uid_key")

    @classmethod
    def sniff(cls, head: bytes) -> bool:
        return head[MAGIC_OFFSET:MAGIC_OFFSET + len(MAGIC)] == MAGIC

    def __init__(self, path: Path, *, max_pixels: int, keep_patient_data: bool = False,
                 uid_key: str = "") -> None:
        """`keep_patient_data`: catalog identifying attributes and real UIDs (a site setting).
        `uid_key`: the archive's key for UID pseudonyms (hex); without one (a reader that only reads
        pixels) pseudonyms are made with a throwaway key, never the real UIDs."""
        super().__init__(path, max_pixels=max_pixels)
        import pydicom

        self.keep_patient_data = keep_patient_data
        self._uid_key = bytes.fromhex(uid_key) if uid_key else secrets.token_bytes(32)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self._ds = pydicom.dcmread(path, force=True)
        except MemoryError:
            raise
        except Exception as error:  # pydicom raises many kinds for damaged files
            raise FormatError(f"{path.name}: not a readable DICOM file: {_reason(error)}") from None
        self._check_complete()

    def _check_complete(self) -> None:
        """pydicom stops quietly where a damaged or cut file stops making sense: say so instead."""
        name = self.path.name
        elements = list(self._ds._dict.values())  # the raw elements as read, in file order
        if not elements:
            raise FormatError(f"{name}: a DICOM file with no data elements after its DICM marker (cut short "
                              "or damaged)")
        last = elements[-1]
        value = getattr(last, "value", None)
        length = getattr(last, "length", None)
        if isinstance(value, bytes) and isinstance(length, int) and length != _UNDEFINED_LENGTH \
                and len(value) < length:
            what = "its pixel data" if last.tag == 0x7FE00010 else f"element {_tag(last.tag)}"
            raise FormatError(f"{name}: the file is cut short or damaged: {what} declares {length:,} bytes "
                              f"and the file holds only {len(value):,}")
        transfer = self._transfer_syntax()
        tell = getattr(last, "value_tell", None)
        if transfer == "1.2.840.10008.1.2.1.99" or not isinstance(tell, int) or not isinstance(value, bytes):
            return  # deflated: positions are in the inflated stream
        end = tell + len(value) + (8 if length == _UNDEFINED_LENGTH else 0)
        size = self.path.stat().st_size
        if end < size:
            with self.path.open("rb") as handle:
                handle.seek(end)
                rest = handle.read(min(size - end, 1 << 16))
            if rest.strip(b"\0"):
                raise FormatError(f"{name}: the file is cut short or damaged: it stops being readable DICOM "
                                  f"at byte {end:,} of {size:,}")

    def _transfer_syntax(self) -> str:
        meta = getattr(self._ds, "file_meta", None)
        uid = meta.get("TransferSyntaxUID") if meta is not None else None
        return str(uid or "")

    def planes(self) -> list[Plane]:
        ds = self._ds
        name = self.path.name
        keyword = next((k for k in _PIXEL_KEYWORDS if k in ds), None)
        if keyword is None:
            raise FormatError(f"{name}: a DICOM file that has no pixel data ({_what(ds)}): nothing to show "
                              "as an image")
        self._check_decoder()
        rows, columns = _int(ds.get("Rows")), _int(ds.get("Columns"))
        check_size(self.path, "the image", columns or 0, rows or 0, self.max_pixels)
        values, comments = self.harvest()
        frames = _int(ds.get("NumberOfFrames")) or 1
        note = f"{frames} frames" if frames > 1 else ""
        planes = {"count": frames, "axis": "frame", "unit": "", "values": None} if frames > 1 else {}
        photometric = str(ds.get("PhotometricInterpretation", "")).strip().upper()
        monochrome = photometric.startswith("MONOCHROME")
        bits = _int(ds.get("BitsAllocated")) or 16
        bitpix = -bits if keyword != "PixelData" else bits
        uid = values.get("SeriesInstanceUID")
        series = None
        if frames == 1 and isinstance(uid, str) and uid:
            series = {"uid": uid, "position": slice_position(ds), "instance": _int(ds.get("InstanceNumber"))}
        return [Plane(hdu=0, name=self._title(numbered=series is None), width=columns or 0, height=rows or 0,
                      bitpix=bitpix, header=values, comments=comments, note=note,
                      window=_window(ds) if monochrome else None, invert=photometric == "MONOCHROME1",
                      planes=planes, series=series)]

    def _title(self, *, numbered: bool = True) -> str:
        """The image's name: what was imaged, from the series or study description and the instance
        number (`CT: CHEST 1.0 B30f #12`; not for a slice of a series, which names the whole series),
        never the file's name, which may carry the patient's name (kept only with the patient data)."""
        ds = self._ds
        parts = [str(ds.get(keyword) or "").strip() for keyword in ("Modality", "SeriesDescription")]
        if not parts[1]:
            parts[1] = str(ds.get("StudyDescription") or ds.get("BodyPartExamined") or "").strip()
        title = ": ".join(part for part in parts if part) or "DICOM image"
        number = _int(ds.get("InstanceNumber"))
        title += f" #{number}" if number is not None and numbered else ""
        return f"{title} ({self.path.name})" if self.keep_patient_data else title

    def _check_decoder(self) -> None:
        """A transfer syntax that no installed decoder reads is named, before any pixel is touched."""
        from pydicom.pixels.decoders.base import get_decoder
        from pydicom.uid import UID

        transfer = self._transfer_syntax()
        if not transfer:
            return  # pydicom guesses little-endian uncompressed data, as readers do for such files
        uid = UID(transfer)
        named = f"{uid.name} ({transfer})" if uid.name != transfer else f"unknown to DICOM ({transfer})"
        try:
            decoder = get_decoder(uid)
        except NotImplementedError:
            raise FormatError(f"{self.path.name}: the pixel data is stored in the transfer syntax {named}, "
                              "which ImageX has no decoder for") from None
        if not decoder.is_available:
            raise FormatError(f"{self.path.name}: the pixel data is stored in the transfer syntax {named}, "
                              "whose decoder is not installed on this server") from None

    def pixel_bytes(self) -> int:
        ds = self._ds
        frames = _int(ds.get("NumberOfFrames")) or 1
        samples = _int(ds.get("SamplesPerPixel")) or 1
        bits = _int(ds.get("BitsAllocated")) or 16
        pixels = (_int(ds.get("Rows")) or 0) * (_int(ds.get("Columns")) or 0)
        return pixels * samples * frames * max(bits, 8) // 8

    def pixels(self, plane: Plane, index: int = 0) -> pyvips.Image:
        """Frame `index` (the first unless asked: the pyramids built at ingest are the first frame's; the
        others are read alone on first use)."""
        array = self._frame(index)
        ds = self._ds
        photometric = str(ds.get("PhotometricInterpretation", "")).strip().upper()
        if photometric == "PALETTE COLOR" and array.ndim == 2:
            from pydicom.pixels.processing import apply_color_lut

            coloured = apply_color_lut(array, ds)
            array = _eight_bit(coloured, 8 * coloured.dtype.itemsize)
        if array.ndim == 3:
            if array.shape[2] != 3:
                raise FormatError(f"{self.path.name}: {array.shape[2]} samples per pixel: ImageX shows "
                                  "grey (1) or colour (3) images")
            rgb = _eight_bit(array, _int(ds.get("BitsStored")) or 8 * array.dtype.itemsize)
            height, width = rgb.shape[:2]
            image = pyvips.Image.new_from_memory(np.ascontiguousarray(rgb).data, width, height, 3, "uchar")
            return image.copy(interpretation="srgb")
        if array.ndim != 2:
            raise FormatError(f"{self.path.name}: expected one 2-D frame, got pixel data of shape "
                              f"{array.shape}")
        values = self._modality_values(array)
        if values.dtype.kind in "iu" and values.dtype.itemsize == 8:
            values = values.astype(np.float64)
        values = np.ascontiguousarray(values, dtype=values.dtype.newbyteorder("="))
        vips_format = _VIPS_FORMATS.get(values.dtype.name)
        if vips_format is None:
            raise FormatError(f"{self.path.name}: unsupported pixel type {values.dtype}")
        height, width = values.shape
        return pyvips.Image.new_from_memory(values.data, width, height, 1, vips_format)

    def _frame(self, index: int) -> np.ndarray:
        from pydicom.pixels.utils import pixel_array

        frames = _int(self._ds.get("NumberOfFrames")) or 1
        if not 0 <= index < frames:
            raise FormatError(f"{self.path.name}: there is no frame {index + 1} (the file has {frames})")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                # colour in YBR is converted to RGB (pydicom's default); only this frame is decoded
                array: np.ndarray = pixel_array(self._ds, index=index)
        except MemoryError:
            raise
        except Exception as error:  # decoders raise many kinds on damaged data
            raise FormatError(f"{self.path.name}: the pixel data cannot be decoded: "
                              f"{_reason(error)}") from None
        return array

    def _modality_values(self, array: np.ndarray) -> np.ndarray:
        """The Modality LUT applied: a lookup table when the file has one, else the rescale. The stored
        integers when the rescale is the identity, else float32 values."""
        ds = self._ds
        if "ModalityLUTSequence" in ds:
            from pydicom.pixels.processing import apply_modality_lut

            try:
                mapped: np.ndarray = apply_modality_lut(array, ds)
                return mapped
            except Exception as error:  # a malformed table: say so rather than show stored values
                raise FormatError(f"{self.path.name}: the Modality LUT cannot be applied: {_reason(error)}") \
                    from None
        slope = _float(ds.get("RescaleSlope"))
        intercept = _float(ds.get("RescaleIntercept"))
        slope = 1.0 if slope is None or slope == 0 else slope
        intercept = intercept or 0.0
        if slope == 1.0 and intercept == 0.0:
            return array
        return (array.astype(np.float64) * slope + intercept).astype(np.float32)

    def harvest(self) -> tuple[dict[str, HeaderValue], dict[str, str]]:
        """Every data element (file meta first) under its keyword, typed; sequences flattened as
        `Sequence[0].Keyword`. Private elements and large binary values are left out, and so is patient
        data unless kept."""
        values: dict[str, HeaderValue] = {}
        comments: dict[str, str] = {}
        meta = getattr(self._ds, "file_meta", None)
        if meta is not None:
            self._walk(meta, "", 0, values, comments)
        self._walk(self._ds, "", 0, values, comments)
        return values, comments

    def _walk(self, dataset: Any, prefix: str, depth: int, values: dict[str, HeaderValue],
              comments: dict[str, str]) -> None:
        for tag in list(dataset.keys()):
            if len(values) >= _MAX_ELEMENTS:
                return
            if tag.is_private or tag.element == 0:  # private: unknown meaning; group lengths: structure
                continue
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    element = dataset[tag]
            except Exception:  # noqa: S112 - a value pydicom cannot convert is left out, as FITS cards are
                continue
            keyword = element.keyword or _tag(tag)
            vr = str(element.VR)
            if keyword in _PIXEL_KEYWORDS or (not self.keep_patient_data and is_patient_data(keyword, vr)):
                continue
            key = prefix + keyword
            if vr == "SQ":
                if depth < _MAX_DEPTH:
                    for index, item in enumerate(list(element.value or [])[:_MAX_ITEMS]):
                        self._walk(item, f"{key}[{index}].", depth + 1, values, comments)
                continue
            value = self._typed(element.value, vr)
            if value is _SKIP:
                continue
            values[key] = value  # type: ignore[assignment]
            if element.name and element.name != keyword:
                comments[key] = str(element.name)

    def _typed(self, value: Any, vr: str) -> HeaderValue | object:
        if value is None:
            return ""
        if vr in _BINARY_VRS or isinstance(value, bytes):
            if not isinstance(value, bytes) or len(value) > _SMALL_BINARY:
                return _SKIP
            return value.hex()
        many = list(value) if _is_multi(value) else [value]
        if vr == "UI" and not self.keep_patient_data:
            many = [pseudonym(str(uid), self._uid_key) if is_instance_uid(str(uid)) else uid for uid in many]
        if len(many) == 1:
            return _one(many[0], vr)
        # DICOM's own form of several values, each as the file wrote it (dates and times as ISO text)
        texts = [_one(item, vr) if vr in ("DA", "TM", "DT", "AT") else str(item).strip() for item in many]
        return "\\".join(str(text) for text in texts)[:_MAX_TEXT]


_SKIP = object()


def _one(item: Any, vr: str) -> str | int | float:
    """One value of an element: numbers as numbers, dates and times as ISO text, the rest as text."""
    if vr in ("IS", "SS", "US", "SL", "UL", "SV", "UV") or (isinstance(item, int) and vr != "AT"):
        try:
            return int(item)
        except (TypeError, ValueError):
            return str(item).strip()[:_MAX_TEXT]
    if vr in ("DS", "FL", "FD") or isinstance(item, float):
        if vr == "DS" and isinstance(item, str) and not item.strip():
            return ""
        try:
            number = float(item)
        except (TypeError, ValueError):
            return str(item).strip()[:_MAX_TEXT]
        return number if math.isfinite(number) else str(number)
    text = str(item).strip()
    if vr == "DA":
        return _iso_date(text)
    if vr == "TM":
        return _iso_time(text)
    if vr == "DT":
        return _iso_datetime(text)
    if vr == "AT":
        return _tag(int(item)) if isinstance(item, int) else text
    return text[:_MAX_TEXT]


def _is_multi(value: Any) -> bool:
    return isinstance(value, list | tuple) or type(value).__name__ == "MultiValue"


def _iso_date(text: str) -> str:
    """DICOM's YYYYMMDD (or the old YYYY.MM.DD) as YYYY-MM-DD; other text as it is."""
    match = _DATE.fullmatch(text)
    return f"{match[1]}-{match[2]}-{match[3]}" if match else text


def _iso_time(text: str) -> str:
    """HHMMSS.FFFFFF (parts may be missing, old files have colons) as hh:mm:ss[.ffffff]."""
    match = _TIME.fullmatch(text)
    if not match:
        return text
    hour, minute, second, fraction = match[1], match[2] or "00", match[3] or "00", match[4]
    return f"{hour}:{minute}:{second}" + (f".{fraction}" if fraction else "")


def _iso_datetime(text: str) -> str:
    """YYYYMMDDHHMMSS.FFFFFF&ZZXX (any tail may be missing) as ISO 8601 text."""
    match = _DATETIME.fullmatch(text)
    if not match or match[3] is None:
        return text  # a year or a month alone is not a moment the catalog can type
    iso = f"{match[1]}-{match[2]}-{match[3]}"
    if match[4] is not None:
        iso += f"T{match[4]}:{match[5] or '00'}:{match[6] or '00'}" + (f".{match[7]}" if match[7] else "")
        if match[8]:
            iso += f"{match[8][:3]}:{match[8][3:]}"
    return iso


def _window(ds: Any) -> tuple[float, float] | None:
    """The first VOI window as (low, high) modality values: centre - width/2 and centre + width/2."""
    centre = _float(_first(ds.get("WindowCenter")))
    width = _float(_first(ds.get("WindowWidth")))
    if centre is None or width is None or width <= 0:
        return None
    return centre - width / 2, centre + width / 2


def slice_position(ds: Any) -> float | None:
    """Where a slice lies along its normal, in mm: ImagePositionPatient (the centre of the first pixel)
    projected on the cross product of the row and column directions of ImageOrientationPatient, as
    radiology viewers order the slices of a series. None when either is missing or malformed."""
    position = [_float(item) for item in ds.get("ImagePositionPatient") or []]
    orientation = [_float(item) for item in ds.get("ImageOrientationPatient") or []]
    if len(position) != 3 or len(orientation) != 6 or None in position or None in orientation:
        return None
    row, column = np.array(orientation[:3], dtype=float), np.array(orientation[3:], dtype=float)
    normal = np.cross(row, column)
    length = float(np.linalg.norm(normal))
    if not math.isfinite(length) or length < 1e-6:
        return None
    return round(float(np.dot(np.array(position, dtype=float), normal / length)), 3)  # to a micrometre


def _first(value: Any) -> Any:
    return value[0] if _is_multi(value) and len(value) else value


def _float(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _eight_bit(array: np.ndarray, bits: int) -> np.ndarray:
    """Colour samples of any depth as 8 bits each (their top bits)."""
    if array.dtype == np.uint8:
        return array
    shift = max(0, min(bits, 8 * array.dtype.itemsize) - 8)
    eight: np.ndarray = np.clip(array.astype(np.int64) >> shift, 0, 255).astype(np.uint8)
    return eight


def _what(ds: Any) -> str:
    """What a DICOM object is, by SOP class and modality: "a Basic Text SR Storage object, modality SR"."""
    from pydicom.uid import UID

    sop = ds.get("SOPClassUID") or getattr(getattr(ds, "file_meta", None), "MediaStorageSOPClassUID", None)
    modality = str(ds.get("Modality") or "").strip()
    name = UID(str(sop)).name if sop else ""
    article = "an" if name[:1] in ("A", "E", "I", "O", "U") or name.startswith(("RT ", "MR ", "X-")) else "a"
    parts = [f"{article} {name} object" if name else "an object of no stated SOP class"]
    if modality:
        parts.append(f"modality {modality}")
    return ", ".join(parts)


def _tag(tag: int) -> str:
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


def _reason(error: BaseException) -> str:
    # pydicom lists each decoder's failure on a line of its own
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return " ".join(lines)[:500] if lines else type(error).__name__

