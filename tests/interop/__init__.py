"""Interop harness: SIPp scenarios and helpers to test uascall against real SIP peers."""
