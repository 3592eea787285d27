// Lint an HTML email against the caniemail database (https://caniemail.com).
// Usage: node tools/caniemail.mjs FILE.html [client-glob ...]
// Prints JSON: {"errors": [...], "warnings": [...]} for the given clients (default: Gmail and Outlook).
import { readFileSync } from 'node:fs';
import { doIUseEmail } from '@jsx-email/doiuse-email';

const [file, ...clients] = process.argv.slice(2);
if (!file) {
  console.error('usage: node tools/caniemail.mjs FILE.html [client-glob ...]');
  process.exit(2);
}
const result = doIUseEmail(readFileSync(file, 'utf8'), {
  emailClients: clients.length ? clients : ['gmail.*', 'outlook.*'],
});
console.log(JSON.stringify({ errors: result.errors ?? [], warnings: result.warnings ?? [] }));
