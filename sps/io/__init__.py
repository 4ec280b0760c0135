"""File I/O shared by every stage: audio (reading, resampling, trimming, loudness), HTS label
files, arrays, lists, atomic writes, the experiment lock."""
from sps.io.atomic import (atomic_path, load_array, node_id, read_json, save_array, sweep_directory,
                           sweep_temp_files, write_json, write_text)
from sps.io.audio import (AUDIO_EXTENSIONS, AudioInfo, audio_info, audio_length, loudness_gain, read_wav,
                          resample, trim_bounds, write_wav)
from sps.io.labels import LabelLine, read_label_file
from sps.io.lists import check_id, is_valid_id, read_list, read_scp, write_list, write_scp
from sps.io.lock import ExperimentLocked, experiment_lock

__all__ = [
    "atomic_path", "sweep_temp_files", "sweep_directory", "node_id", "save_array", "load_array", "write_json",
    "read_json", "write_text", "experiment_lock", "ExperimentLocked",
    "read_wav", "write_wav", "audio_length", "audio_info", "AudioInfo", "AUDIO_EXTENSIONS", "resample",
    "trim_bounds", "loudness_gain", "LabelLine", "read_label_file",
    "check_id", "is_valid_id", "read_list", "write_list", "read_scp", "write_scp",
]
