// Node's c-ares resolver (dns.promises.Resolver), as Node services in a pod use it: the
// nameservers of /etc/resolv.conf; Resolver queries are sent as given (c-ares' ares_query: no
// search list), so names are fully qualified.
//
//   node lookup.js host NAME          resolve4 + resolve6: the addresses, sorted, one per line
//   node lookup.js addr IP            reverse: the names
//   node lookup.js srv NAME           resolveSrv: "PORT TARGET" lines, sorted
//   node lookup.js cname NAME         resolveCname
//   node lookup.js loop MS NAME...    resolve4 of each NAME in turn, MS ms apart, until killed;
//                                     one line per lookup: START_MS LATENCY_MS NAME ADDR,...|ERR:CODE
//
// A failed lookup prints "ERR CODE" (c-ares' code: ENOTFOUND, ETIMEOUT, ESERVFAIL, ...), exit 2.
// The one-shot modes print the lookup's own duration on stderr: "lookup-ms MS".
'use strict';
const { Resolver } = require('dns').promises;

const r = new Resolver();

async function host(name) {
  const out = [];
  let found = false;
  for (const f of [r.resolve4.bind(r), r.resolve6.bind(r)]) {
    try {
      out.push(...(await f(name)));
      found = true;
    } catch (e) {
      if (e.code !== 'ENODATA') throw e;
    }
  }
  if (!found) {
    const e = new Error('no data');
    e.code = 'ENODATA';
    throw e;
  }
  return [...new Set(out)].sort();
}

async function main() {
  const [cmd, ...a] = process.argv.slice(2);
  const t0 = process.hrtime.bigint();
  const took = () => console.error(`lookup-ms ${(Number(process.hrtime.bigint() - t0) / 1e6).toFixed(3)}`);
  try {
    if (cmd === 'host') console.log((await host(a[0])).join('\n'));
    else if (cmd === 'addr') console.log((await r.reverse(a[0])).sort().join('\n'));
    else if (cmd === 'srv') console.log((await r.resolveSrv(a[0])).map((s) => `${s.port} ${s.name}`).sort().join('\n'));
    else if (cmd === 'cname') console.log((await r.resolveCname(a[0])).join('\n'));
    if (cmd !== 'loop') took();
    else if (cmd === 'loop') {
      const ms = Number(a[0]);
      const names = a.slice(1);
      for (let i = 0; ; i++) {
        const name = names[i % names.length];
        const wall = Date.now();
        const t0 = process.hrtime.bigint();
        let res;
        try {
          res = [...new Set(await r.resolve4(name))].sort().join(',');
        } catch (e) {
          res = `ERR:${e.code}`;
        }
        const lat = Number(process.hrtime.bigint() - t0) / 1e6;
        process.stdout.write(`${wall} ${lat.toFixed(3)} ${name} ${res}\n`);
        await new Promise((ok) => setTimeout(ok, ms));
      }
    } else {
      console.error('usage: lookup.js host NAME | addr IP | srv NAME | cname NAME | loop MS NAME...');
      process.exit(1);
    }
  } catch (e) {
    took();
    console.log(`ERR ${e.code}`);
    console.error(e.message);
    process.exit(2);
  }
}

main();
