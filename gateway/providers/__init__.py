"""Provider adapters: pure translators between our requests and each upstream's wire format."""
