"""Google Cloud: Vertex AI's OpenAI-compatible endpoint (vertex.py), OAuth from ADC (credentials.py)."""
