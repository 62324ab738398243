"""A TCP relay that limits uploads, for measuring the job against an S3
server on this machine as if it were across a network (docs/performance.md,
"On S3"): `python3 benches/throttle.py LISTEN TARGET RATE` relays
127.0.0.1:LISTEN to 127.0.0.1:TARGET and lets the clients' bytes through at
RATE bytes per second in all (one shared uplink); answers are not limited.
Never run by CI."""
import asyncio, sys, time
LISTEN, TARGET, RATE = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
class Bucket:
    def __init__(self, rate):
        self.rate, self.t, self.debt = rate, time.monotonic(), 0.0
    async def take(self, n):
        now = time.monotonic()
        self.debt = max(0.0, self.debt - (now - self.t) * self.rate) + n
        self.t = now
        wait = self.debt / self.rate - 0.002
        if wait > 0:
            await asyncio.sleep(wait)
up = Bucket(RATE)
async def pipe(r, w, bucket):
    try:
        while True:
            data = await r.read(256 * 1024)
            if not data:
                break
            if bucket:
                await bucket.take(len(data))
            w.write(data)
            await w.drain()
    except Exception:
        pass
    finally:
        try:
            w.close()
        except Exception:
            pass
async def handle(cr, cw):
    sr, sw = await asyncio.open_connection("127.0.0.1", TARGET)
    await asyncio.gather(pipe(cr, sw, up), pipe(sr, cw, None))
async def main():
    srv = await asyncio.start_server(handle, "127.0.0.1", LISTEN)
    async with srv:
        await srv.serve_forever()
asyncio.run(main())
