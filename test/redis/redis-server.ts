/**
 * A real `redis-server` for one test file: a free loopback port, no persistence, a temp dir; stopped by PID.
 * `pause()` / `resume()` (SIGSTOP / SIGCONT) simulate a Redis that does not answer; `kill()` one that is down;
 * `restart()` brings it back on the same port (empty: it never persisted anything).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { Redis } from 'ioredis';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface TestRedis {
  /** A client that reconnects quickly and stays quiet while Redis is down; disconnected by `stop()`. */
  client(): Redis;
  readonly port: number;
  readonly url: string;
  pid(): number;
  pause(): void;
  resume(): void;
  kill(): Promise<void>;
  restart(): Promise<void>;
  stop(): Promise<void>;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const port = (server.address() as { port: number }).port;
      server.close(() => resolve(port));
    });
  });
}

async function waitForPing(port: number, deadlineMs: number): Promise<void> {
  const until = Date.now() + deadlineMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const socket = connect(port, '127.0.0.1');
      let data = '';
      socket.setTimeout(500, () => socket.destroy());
      socket.on('connect', () => socket.write('PING\r\n'));
      socket.on('data', (chunk) => {
        data += chunk.toString();
        if (data.includes('+PONG')) {
          socket.end();
          resolve(true);
        }
      });
      socket.on('error', () => resolve(false));
      socket.on('close', () => resolve(data.includes('+PONG')));
    });
    if (ok) return;
    if (Date.now() > until) throw new Error(`redis-server on port ${port} did not answer within ${deadlineMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Starts one; `extraArgs` are more `redis-server` options (`['--maxmemory', '3mb']`). */
export async function startRedis(extraArgs: readonly string[] = []): Promise<TestRedis> {
  const dir = mkdtempSync(join(tmpdir(), 'mta-sts-redis-'));
  const port = await freePort();
  let child: ChildProcess | undefined;
  const launch = async (): Promise<void> => {
    const c = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, '--daemonize', 'no', '--loglevel', 'warning', ...extraArgs], { stdio: 'ignore' });
    child = c;
    const failed = new Promise<never>((_, reject) => {
      c.once('error', (error) => reject(new Error(`cannot start redis-server (${error.message}): install it with \`apt-get install redis-server\` (.ci/run does)`)));
      c.once('exit', (code, signal) => reject(new Error(`redis-server exited at start (${code ?? signal})`)));
    });
    failed.catch(() => undefined);
    await Promise.race([waitForPing(port, 10_000), failed]);
  };
  const exited = (c: ChildProcess): Promise<void> => (c.exitCode !== null || c.signalCode !== null ? Promise.resolve() : new Promise((r) => c.once('exit', () => r())));
  const kill = async (): Promise<void> => {
    const c = child;
    if (!c || c.pid === undefined) return;
    child = undefined;
    process.kill(c.pid, 'SIGCONT');
    process.kill(c.pid, 'SIGKILL');
    await exited(c);
  };
  await launch();
  const clients: Redis[] = [];
  return {
    client() {
      const c = new Redis(`redis://127.0.0.1:${port}`, { maxRetriesPerRequest: null, retryStrategy: () => 50 });
      c.on('error', () => undefined); // reconnect noise while a test has Redis down
      clients.push(c);
      return c;
    },
    port,
    url: `redis://127.0.0.1:${port}`,
    pid: () => child?.pid ?? -1,
    pause: () => child?.pid !== undefined && process.kill(child.pid, 'SIGSTOP'),
    resume: () => child?.pid !== undefined && process.kill(child.pid, 'SIGCONT'),
    kill,
    restart: async () => {
      await kill();
      await launch();
    },
    stop: async () => {
      for (const c of clients) c.disconnect();
      await kill();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
