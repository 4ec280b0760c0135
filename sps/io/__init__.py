"""File I/O shared by every stage: audio, HTS label files, arrays, lists, atomic writes."""
from sps.io.atomic import atomic_path, save_array, load_array, write_json, read_json, write_text
from sps.io.audio import read_wav, write_wav
from sps.io.labels import LabelLine, read_label_file
from sps.io.lists import read_list, write_list, read_scp, write_scp

__all__ = [
    "atomic_path", "save_array", "load_array", "write_json", "read_json", "write_text",
    "read_wav", "write_wav", "LabelLine", "read_label_file",
    "read_list", "write_list", "read_scp", "write_scp",
]
