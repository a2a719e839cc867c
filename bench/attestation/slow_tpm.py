#!/usr/bin/env python3
"""A TPM whose quote takes QUOTE_MS: a TCP proxy in front of swtpm (the bench's stand-in
for a hardware TPM, where a quote takes 30-150 ms; swtpm takes about 1 ms).

    slow_tpm.py LISTEN_PORT SWTPM_PORT QUOTE_MS

It listens on LISTEN_PORT (TPM commands, as the tss2 `swtpm` TCTI sends them: raw TPM 2.0
command and response buffers) and LISTEN_PORT+1 (swtpm's control channel, relayed as is),
so the TCTI `swtpm:host=127.0.0.1,port=LISTEN_PORT` reaches it. Each command is read whole
(its header says its size), forwarded, and its response read whole; the response to
TPM2_Quote (command code 0x158) is held QUOTE_MS before it is passed on. Other commands
pass at once. Connections are independent (asyncio), so a held quote delays only the
connection that asked for it, as one TPM would.

gateway/tests/api_timeouts.rs uses it too, holding a quote beyond api.request_timeout.
"""
import asyncio
import struct
import sys

TPM2_CC_QUOTE = 0x158

async def read_message(reader):
    header = await reader.readexactly(10)
    (size,) = struct.unpack(">I", header[2:6])
    if size < 10 or size > 1 << 20:
        raise ConnectionError(f"TPM message of {size} bytes")
    return header + await reader.readexactly(size - 10)

async def tpm_connection(client_r, client_w, upstream, hold):
    tpm_r, tpm_w = await asyncio.open_connection("127.0.0.1", upstream)
    try:
        while True:
            command = await read_message(client_r)
            (code,) = struct.unpack(">I", command[6:10])
            tpm_w.write(command)
            await tpm_w.drain()
            response = await read_message(tpm_r)
            if code == TPM2_CC_QUOTE:
                await asyncio.sleep(hold)
            client_w.write(response)
            await client_w.drain()
    except (asyncio.IncompleteReadError, ConnectionError, OSError):
        pass
    finally:
        tpm_w.close()
        client_w.close()

async def pipe(reader, writer):
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()

async def ctrl_connection(client_r, client_w, upstream):
    tpm_r, tpm_w = await asyncio.open_connection("127.0.0.1", upstream)
    await asyncio.gather(pipe(client_r, tpm_w), pipe(tpm_r, client_w))

async def main():
    listen, upstream, hold = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]) / 1000
    data = await asyncio.start_server(
        lambda r, w: tpm_connection(r, w, upstream, hold), "127.0.0.1", listen)
    ctrl = await asyncio.start_server(
        lambda r, w: ctrl_connection(r, w, upstream + 1), "127.0.0.1", listen + 1)
    async with data, ctrl:
        await asyncio.gather(data.serve_forever(), ctrl.serve_forever())

asyncio.run(main())
