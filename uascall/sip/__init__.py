"""SIP/RTP backend: sans-I/O cores (message, sdp, transaction, dialog, rtp) and one UDP
transport on the engine."""
