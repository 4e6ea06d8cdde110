"""Speech to text for /api/voice through an OpenAI-compatible transcription endpoint ([stt] in the config)."""

from __future__ import annotations

import importlib

from gateway.config import SttSection
from gateway.errors import GatewayError

EXTENSIONS = {"audio/wav": "wav", "audio/x-wav": "wav", "audio/webm": "webm", "audio/ogg": "ogg",
              "audio/mpeg": "mp3", "audio/mp4": "m4a", "audio/flac": "flac"}


class VoiceUnavailable(GatewayError):
    """No transcription endpoint is configured; the message says how to configure one."""


class Transcriber:
    def __init__(self, settings: SttSection) -> None:
        self.settings = settings

    async def transcribe(self, audio: bytes, content_type: str) -> str:
        if not self.settings.configured:
            raise VoiceUnavailable(
                "voice needs a transcription server: set [stt] base_url (and model, api_key) to any "
                "OpenAI-compatible endpoint with /audio/transcriptions, e.g. a local whisper.cpp or "
                "faster-whisper server; the web page's microphone uses the browser's own recognition meanwhile")
        openai = importlib.import_module("openai")
        client = openai.AsyncOpenAI(base_url=self.settings.base_url,
                                    api_key=self.settings.api_key.get_secret_value() or "unused", max_retries=1)
        extension = EXTENSIONS.get(content_type.split(";")[0].strip(), "wav")
        try:
            result = await client.audio.transcriptions.create(
                model=self.settings.model, file=(f"speech.{extension}", audio, content_type),
                **({"language": self.settings.language} if self.settings.language else {}))
        finally:
            await client.close()
        text: str = result.text  # the openai package is imported by name: it is optional
        return text
