// app.js: the browser app served at /. It signs in (a dev name, or a token), keeps a room
// list, shows one conversation at a time (a room or a direct partner) and sends messages,
// all through the client library in switchboard.js. Its parts live in app/: storage.js
// (batched saving), history.js (what is kept per user), outbox.js (what is not sent yet),
// activity.js (typing and who is online), notify.js (desktop notifications), messages.js and
// view.js (drawing), signin.js (the form), session.js (one signed-in user) and main.js,
// which builds them.
// This file only starts it.

import { main } from './app/main.js';

main(window);
