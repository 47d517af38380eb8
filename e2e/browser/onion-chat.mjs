// Drives two headless Firefox ESR pages (Tor Browser's base, with its "Safer"-like prefs) through Tor to a relay's onion address: one creates an anonymous room,
// the other opens its invite link, and they chat both ways. Run by TestBrowserThroughOnion (cmd/cleanrelay),
// inside a loopback-only network namespace, with CR_ONION_URL (http://….onion/) and CR_SOCKS (127.0.0.1:port,
// the private test network's client tor). Not a node:test file: it needs a Tor network the Go test builds.
import { launch, openPage, shot, press, say, sees } from './harness.mjs';

const slow = { timeout: 120000 }; // through Tor

const url = process.env.CR_ONION_URL;
const socks = process.env.CR_SOCKS;
if (!url || !/^http:\/\/[a-z2-7]{56}\.onion\/$/.test(url) || !socks) {
  console.error('usage: CR_ONION_URL=http://<56 chars>.onion/ CR_SOCKS=127.0.0.1:PORT node onion-chat.mjs');
  process.exit(2);
}

const t0 = Date.now();
// Tor Browser's own settings for onion services: everything through the SOCKS proxy, which resolves the .onion
// name itself, and an onion address over http is a secure context (dom.securecontext.allowlist_onions, which
// Tor Browser turns on; Chromium has no equivalent, so it is not used here).
const [host, port] = socks.split(':');
const b = await launch('firefox', {
  prefs: {
    'network.proxy.type': 1,
    'network.proxy.socks': host,
    'network.proxy.socks_port': Number(port),
    'network.proxy.socks_version': 5,
    'network.proxy.socks_remote_dns': true,
    'network.dns.blockDotOnion': false,
    'dom.securecontext.allowlist_onions': true,
  },
});
let ok = false;
try {
  const alice = await openPage(b, url);
  if (await alice.$('#refused')) throw new Error('the client refused to run: an onion address must be a secure context');
  console.log(`page loaded through the onion in ${Date.now() - t0} ms`);
  await press(alice, '#create', slow);
  await alice.waitForSelector('#invitelink', { timeout: 120000 });
  const invite = await alice.$eval('#invitelink', (el) => el.value);
  if (!invite.startsWith(url)) throw new Error(`invite link ${invite} is not on the onion address`);
  const bob = await openPage(b, invite);
  await press(bob, '#join', slow);
  await bob.waitForSelector('#room', { timeout: 120000 });
  const t1 = Date.now();
  await say(alice, 'hello through tor', slow);
  await sees(bob, 'hello through tor', slow);
  await say(bob, 'привет через tor', slow);
  await sees(alice, 'привет через tor', slow);
  console.log(`chat both ways through the onion: ${Date.now() - t1} ms after joining`);
  await shot(alice, 'firefox-onion-chat');
  const errors = [...alice.errors, ...bob.errors];
  if (errors.length) console.log(`console errors: ${errors.join(' | ')}`);
  ok = true;
} finally {
  await b.close();
}
console.log(ok ? 'onion browser chat ok' : 'onion browser chat FAILED');
process.exit(ok ? 0 : 1);
