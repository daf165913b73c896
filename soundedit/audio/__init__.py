"""Audio front end: decode, resample, mix, log-mel on the device, SpecAugment, the authors' transform.

    from soundedit.audio import load_audio, mix, LogMel, prepare_clips, official_model_input
    rain = load_audio("rain.wav", 44100)
    storm = mix([load_audio("thunder.wav"), rain], [0.0, -6.0])
    mel = LogMel()(prepare_clips([storm]))              # (1, 128, 431), values in [0, 1]
    x = official_model_input("rain.wav")                # (1, 1, 128, 512) for the authors' encoder
"""

from soundedit.audio.augment import spec_augment
from soundedit.audio.features import (LogMel, fix_length, log_mel, mel_filterbank, official_layout,
                                      official_model_input, power_to_db, prepare_clips)
from soundedit.audio.io import (AUDIO_EXTENSIONS, DEFAULT_MAX_DURATION, AudioSource, Waveform, audio_info,
                                load_audio, resample)
from soundedit.audio.mixing import db_to_gain, loudness, mix, normalize_loudness

__all__ = [
    "AUDIO_EXTENSIONS", "DEFAULT_MAX_DURATION", "AudioSource", "LogMel", "Waveform", "audio_info", "db_to_gain",
    "fix_length", "load_audio", "log_mel", "loudness", "mel_filterbank", "mix", "normalize_loudness",
    "official_layout", "official_model_input", "power_to_db", "prepare_clips", "resample", "spec_augment",
]
