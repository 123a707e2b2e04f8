"""Sync and async clients of the H2o/chat-ui protocol, sharing every line of protocol logic."""

from h2o_chat.client._async import AsyncClient, AsyncConversation
from h2o_chat.client._retry import RetryPolicy
from h2o_chat.client._sync import Client, Conversation

__all__ = ["AsyncClient", "AsyncConversation", "Client", "Conversation", "RetryPolicy"]
