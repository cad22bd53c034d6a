"""Front doors other than OpenAI's chat: the Responses API and Anthropic's Messages API, translated to chat.

Each translator is pure (a client body in, a canonical chat body out; a chat answer in, the client's shape
out) and each stream encoder turns canonical `chat.completion.chunk` payloads into the client's named SSE
events, so any backend that serves chat serves these doors too.
"""
