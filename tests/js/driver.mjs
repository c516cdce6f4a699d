// Drives the real centrifuge-js client for Skyrelay's compatibility tests.
// Reads one JSON command per stdin line, writes one JSON event per stdout line.
// config.protobuf picks the protobuf build: data then travels as bytes, which this driver
// writes from and reads back into JSON, so that tests compare values either way.
import readline from 'node:readline';
import WebSocket from 'ws';
import { EventSource } from 'eventsource';

const config = JSON.parse(process.argv[2]);
const out = (event) => process.stdout.write(JSON.stringify(event) + '\n');
const { Centrifuge } = await import(config.protobuf ? 'centrifuge/build/protobuf' : 'centrifuge');

const encode = (data) => (config.protobuf ? new TextEncoder().encode(JSON.stringify(data)) : data);
const decode = (data) => {
  if (!config.protobuf || data === undefined || data === null) return data;
  return JSON.parse(new TextDecoder().decode(data));
};

let tokens = 0;
// An empty token connects without one (anonymous, where the edge allows it). With
// config.refreshTokens, each new token comes from the test (a get_token event, then the
// `token` command answers it).
let pendingToken = null;
const getToken = config.refreshTokens
  ? () => new Promise((resolve) => {
    tokens += 1;
    pendingToken = resolve;
    out({ ev: 'get_token', count: tokens });
  })
  : undefined;
const client = new Centrifuge(config.endpoints, {
  token: config.token || undefined,
  getToken,
  websocket: WebSocket,
  eventsource: EventSource,
  fetch: fetch,
  readableStream: ReadableStream,
  emulationEndpoint: config.emulationEndpoint,
  minReconnectDelay: 100,
  maxReconnectDelay: 1000,
});
client.on('connected', (ctx) => out({ ev: 'connected', transport: ctx.transport, client: ctx.client }));
client.on('disconnected', (ctx) => out({ ev: 'disconnected', code: ctx.code, reason: ctx.reason }));
client.on('connecting', (ctx) => out({ ev: 'connecting', code: ctx.code, reason: ctx.reason }));
client.on('error', (ctx) => out({ ev: 'client_error', error: String(ctx.error && ctx.error.message) }));
// Server-side subscriptions: events on the client, not on a Subscription.
client.on('subscribed', (ctx) => out({
  ev: 'server_subscribed', channel: ctx.channel, recovered: ctx.recovered, wasRecovering: ctx.wasRecovering,
  offset: ctx.streamPosition ? ctx.streamPosition.offset : null,
}));
client.on('publication', (ctx) => out({ ev: 'server_pub', channel: ctx.channel, offset: ctx.offset, data: decode(ctx.data) }));

const subs = new Map();

// options: token (a subscription token), joinLeave (default true), states (positions that
// successive getState calls return; each call is reported as a get_state event).
function subscription(channel, options = {}) {
  let sub = subs.get(channel);
  if (sub) return sub;
  const settings = { recoverable: true, joinLeave: options.joinLeave !== false };
  if (options.token) settings.token = options.token;
  if (options.delta) settings.delta = options.delta;
  if (options.states) {
    let calls = 0;
    settings.getState = async () => {
      const position = options.states[Math.min(calls, options.states.length - 1)];
      calls += 1;
      out({ ev: 'get_state', channel, calls });
      return position;
    };
  }
  sub = client.newSubscription(channel, settings);
  sub.on('subscribed', (ctx) => out({
    ev: 'subscribed', channel, recovered: ctx.recovered, wasRecovering: ctx.wasRecovering,
    offset: ctx.streamPosition ? ctx.streamPosition.offset : null,
    epoch: ctx.streamPosition ? ctx.streamPosition.epoch : null,
  }));
  sub.on('publication', (ctx) => out({ ev: 'pub', channel, offset: ctx.offset, data: decode(ctx.data) }));
  sub.on('join', (ctx) => out({ ev: 'join', channel, user: ctx.info.user }));
  sub.on('leave', (ctx) => out({ ev: 'leave', channel, user: ctx.info.user }));
  sub.on('unsubscribed', (ctx) => out({ ev: 'unsubscribed', channel, code: ctx.code }));
  sub.on('error', (ctx) => out({
    ev: 'sub_error', channel, code: ctx.error && ctx.error.code, error: String(ctx.error && ctx.error.message),
  }));
  subs.set(channel, sub);
  return sub;
}

async function run(cmd) {
  switch (cmd.cmd) {
    case 'connect': client.connect(); return {};
    case 'disconnect': client.disconnect(); return {};
    case 'subscribe': subscription(cmd.channel, cmd.options).subscribe(); return {};
    case 'publish': await client.publish(cmd.channel, encode(cmd.data)); return {};
    case 'rpc': {
      const r = await client.rpc(cmd.method, encode(cmd.data));
      return { data: decode(r.data) };
    }
    case 'token': pendingToken(cmd.token); pendingToken = null; return {};
    case 'history': {
      const h = await client.history(cmd.channel, { limit: cmd.limit });
      return { offset: h.offset, epoch: h.epoch, publications: h.publications.map((p) => ({ offset: p.offset, data: decode(p.data) })) };
    }
    case 'presence': {
      const p = await client.presence(cmd.channel);
      return { users: Object.values(p.clients).map((c) => c.user).sort() };
    }
    case 'presence_stats': {
      const s = await client.presenceStats(cmd.channel);
      return { numClients: s.numClients, numUsers: s.numUsers };
    }
    case 'exit': client.disconnect(); setTimeout(() => process.exit(0), 50); return {};
    default: throw new Error(`unknown command ${cmd.cmd}`);
  }
}

readline.createInterface({ input: process.stdin }).on('line', async (line) => {
  const cmd = JSON.parse(line);
  try {
    out({ ev: 'result', id: cmd.id, result: await run(cmd) });
  } catch (e) {
    out({ ev: 'result', id: cmd.id, error: { code: e.code, message: String(e.message) } });
  }
});
out({ ev: 'ready' });
