"""Test doubles that speak real protocols (no mocked client objects)."""

from tests.fakes.fake_openai import FakeOpenAIServer, RecordedRequest, Reply, fake_openai_server

__all__ = ["FakeOpenAIServer", "RecordedRequest", "Reply", "fake_openai_server"]
