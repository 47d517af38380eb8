// Module i18n holds the interface strings in English and Russian, formats numbers and dates with Intl,
// and turns the relay's error codes into sentences (the relay's own English text is never shown).

// Each table is grouped by screen; a new group goes at the end of both tables, under the same comment.
// e2e/unit/i18n.test.mjs fails when a key is in one table only or defined twice.
const STRINGS = {
  en: {
    // Page and language switch. `lang` labels the switch with the language it switches to.
    title: 'cleanrelay',
    tagline: 'End-to-end encrypted chat through a relay that only ever sees ciphertext.',
    lang: 'Русский',
    lang_code: 'ru',
    lang_switch: 'Switch the interface to Russian',
    refuse_title: 'This browser cannot run cleanrelay safely',
    refuse_subtle: 'Web Crypto (crypto.subtle) is missing, so keys cannot be made here.',
    refuse_secure: 'This page is not a secure context. Open it over https://, http://localhost or a .onion address.',
    refuse_worker: 'Web Workers are unavailable, so encryption would freeze the page.',
    refuse_crypto: 'The encryption worker did not start.',
    problem: 'Problem',

    // Home and joining.
    anon_title: 'Anonymous room',
    anon_text: 'No account. Your browser makes a one-time key; the invite link carries a secret that never reaches the server. Closing the tab destroys the keys.',
    key_type: 'Key type',
    key_rsa: 'RSA-4096 (default, works with GnuPG)',
    key_curve: 'Curve25519 (fast)',
    acct_key_curve: 'Curve25519 (default: fast; GnuPG 2.2 and newer)',
    acct_key_rsa: 'RSA-4096 (slow to start a conversation in Tor Browser; any GnuPG)',
    acct_key_v6: 'Ed25519/X25519, OpenPGP v6 (not for GnuPG)',
    acct_key_hint: 'An OpenPGP v6 key (RFC 9580) is as fast as Curve25519 and has a longer fingerprint, but GnuPG 2.2 and 2.4 cannot import it: its exported key pair works in cleanrelay and in RFC 9580 programs such as Sequoia, not in gpg.',
    max_members: 'Members',
    create_room: 'Create room',
    join_title: 'Join an anonymous room',
    join_room: 'Join room',
    accounts_title: 'Accounts',
    accounts_intro: 'Register once, publish your OpenPGP key, find people by name and chat in end-to-end encrypted dialogs.',
    making_key: 'Making your one-time key…',
    connecting: 'Connecting to the relay…',
    checking_invite: 'Checking the invite…',
    invite_bad: 'This invite link is broken: part of it is missing or mistyped. Ask for the link again.',

    // Room screen.
    invite_label: 'Invite link: send it over a channel you trust. Anyone with it can join.',
    copy: 'Copy',
    copied: 'Copied',
    waiting_peer: 'Waiting for the other side to join…',
    room_full_now: 'The room is full; the invite link no longer lets anyone in.',
    e2e_label: 'End-to-end encrypted',
    keys_button: 'Keys',
    online: 'connected',
    offline: 'connection lost, reconnecting…',
    resumed: 'reconnected',
    message_label: 'Message',
    message_ph: 'Write a message',
    log_label: 'Messages',
    send: 'Send',
    timer: 'Disappearing messages (for everyone)',
    timer_off: 'never',
    attach: 'Send a file',
    burn: 'Burn room',
    burn_confirm: 'End this room for everyone now? All messages disappear.',
    new_room: 'Start again',
    back: 'Back',
    dialog_with: 'Dialog with {u}',
    you: 'you',
    member_n: 'member {n}',
    unverified: 'signature NOT verified',
    storage_note: 'Tor Browser forgets everything when it closes. Export your key pair if you want to keep it.',
    storage_note_anon: 'Tor Browser forgets everything when it closes; this room\'s keys end with the tab.',

    // Presence and system lines.
    joined: 'Member {n} joined',
    left: 'Member {n} left',
    away: 'Member {n} lost connection',
    member_back: 'Member {n} is back',
    peer_key_ok: 'Member {n}: key received and bound to the invite secret',
    peer_key_dir: 'Key of {u}: {fp} (pinned)',

    // How a room ends (the `closed` reasons of the protocol, and the client's own).
    ended_burned: 'The room was burned. Everything in it is gone.',
    ended_expired: 'The room reached the relay\'s room lifetime and was closed. Everything in it is gone; start a new room to go on.',
    ended_shutdown: 'The relay is shutting down, so the room ended. Everything in it is gone; try again when the relay is back.',
    ended_revoked: 'Your account or key was withdrawn by the relay\'s operator, so the room ended for you.',
    ended_moved: 'This conversation was opened in another tab; it goes on there.',
    ended_timeout: 'The connection was lost for too long and the relay gave your place away.',
    ended_gone: 'The room no longer exists on the relay (it ended, or the relay restarted).',
    ended_other: 'The room has ended.',

    // Files.
    file_from: 'File',
    save: 'Save',
    receiving: 'Receiving',
    sending: 'Sending',
    file_sent: 'Sent',
    too_big: 'File too large: at most {n}.',

    // Keys and verification.
    keys_title: 'Keys in this room',
    your_key: 'Your key',
    peer_key: 'Member {n}',
    algorithm: 'Algorithm',
    created: 'Created',
    fingerprint: 'Fingerprint',
    safety: 'Safety code',
    armored: 'Public key',
    export_key: 'Export key pair (ZIP)',
    export_pass: 'Passphrase to protect the exported private key',
    export_do: 'Export',
    close: 'Close',
    verify: 'Verify',
    verify_who: 'Verify {who}',
    verify_text: 'Compare this safety code with {who} in person or over a channel you trust, or scan the QR code on their screen. If it is the same on both screens, nobody sits between you.',
    your_fp: 'Your fingerprint',
    their_fp: 'Fingerprint of {who}',
    qr_label: 'QR code of the safety code',
    mark_verified: 'Mark as verified',
    unmark_verified: 'Remove the verified mark',
    verified: 'Verified',
    verified_who: 'You verified {who}',
    not_verified: 'Not verified',
    keychange_title: 'Warning: a member\'s key changed',
    keychange_text: 'Member {n} announced a different key than the one pinned for them. Nothing will be sent until you decide. Compare the new safety code with them out of band.',
    dir_keychange_text: 'The directory now shows another key for {u} than the one you pinned. The relay could be trying to read your messages. Compare the safety code with {u} out of band before you trust it.',
    old_fp: 'Pinned fingerprint',
    new_fp: 'New fingerprint',
    trust_new: 'I compared the code: trust the new key',
    forged: 'Refused a key that was not made with this invite secret. The relay or someone else tried to swap keys.',
    cancel: 'Cancel',

    // Forms and their checks.
    required: 'Fill in this field.',
    email_bad: 'This is not an e-mail address; write it as name@example.org.',
    username_bad: '3 to 32 characters: Latin letters, digits and . _ - between them.',
    missing_length: 'at least 8 characters',
    missing_upper: 'an upper-case letter',
    missing_lower: 'a lower-case letter',
    missing_digit: 'a digit',
    missing_special: 'a special character',
    missing_prefix: 'The password needs: ',
    missing_prefix_pass: 'The passphrase needs: ',
    passphrase_or_long: ' — or use a long passphrase of 15 or more characters, such as a few words.',
    password_rule: 'At least 8 characters with an upper-case letter, a lower-case letter, a digit and a special character.',
    passphrase_rule: 'Either 15 or more characters (a few words are easy to remember), or at least 8 with an upper-case letter, a lower-case letter, a digit and a special character.',

    // Account screens.
    login: 'Log in',
    register: 'Register',
    show: 'Show',
    hide: 'Hide',
    show_password: 'Show the password',
    username: 'Username',
    full_name: 'Full name',
    email: 'E-mail (optional)',
    password: 'Password',
    registered: 'Account created. Log in now.',
    unlock_title: 'Unlock your key',
    logged_in_as: 'Logged in as {u}',
    passphrase: 'Key passphrase',
    unlock: 'Unlock',
    forgot: 'Forgot the passphrase: make a new key pair',
    forgot_warning: 'A new key pair replaces your published key. Messages encrypted to the old key can no longer be read. Continue?',
    wrong_passphrase: 'Wrong passphrase.',
    keysetup_title: 'Make your key pair',
    keysetup_text: 'Your browser makes an OpenPGP key pair. The private key stays in this browser, encrypted with your passphrase; the public key is published so others can find you.',
    generate: 'Generate key pair',
    import_title: 'Or import a key pair (ZIP)',
    import_file: 'Key pair ZIP',
    import: 'Import',
    download_zip: 'Download the ZIP',
    key_ready: 'Your key pair is ready',
    continue: 'Continue',
    search_label: 'Search users by name',
    search_ph: 'At least 2 letters',
    searching: 'Searching…',
    no_user: 'No user found.',
    my_key: 'My key',
    logout: 'Log out',
    dialogs: 'Dialogs',
    no_dialogs: 'No dialogs yet: find a user below.',
    new_dialog: 'new',
    find_user: 'Find a user',
    regenerate: 'Make a new key pair',
    dir_mismatch: 'The directory answered with a key whose fingerprint does not match. Nothing was opened.',

    // Errors by code: the relay's protocol (docs/protocol.md §4.3) and accounts API (docs/accounts.md §9),
    // then the client's own.
    err_unknown: 'The relay refused the request (code {code}).',
    err_bad_request: 'The relay did not accept the request as sent. Reload the page and try again.',
    err_unknown_type: 'This page and the relay speak different versions. Reload the page.',
    err_bad_frame: 'A message was malformed and the relay refused it.',
    err_not_member: 'This tab is no longer a member of the room.',
    err_denied: 'This room no longer exists or the link is wrong. Rooms end when they are burned, reach their lifetime or everyone leaves; ask for a new invite.',
    err_room_full: 'This room is full: everyone it was made for has joined. Ask for a new invite.',
    err_too_many_rooms: 'This tab holds as many rooms as the relay allows. Leave one first.',
    err_bad_token: 'The relay no longer knows this place in the room.',
    err_busy: 'The relay is busy right now. Try again in a minute.',
    err_already_member: 'This tab is already in that room.',
    err_over_memory: 'The relay is short of memory right now. Try again in a minute.',
    err_control_too_large: 'A request was too large for the relay.',
    err_bad_json: 'The relay did not accept the request as sent. Reload the page and try again.',
    err_invalid_username: 'This username is not allowed: 3 to 32 characters of Latin letters, digits and . _ -, starting and ending with a letter or digit.',
    err_invalid_full_name: 'This full name is not allowed: 1 to 64 characters, no invisible characters or double spaces.',
    err_invalid_email: 'This e-mail address is not allowed: write it as name@example.org.',
    err_weak_password: 'The relay refused this password: it needs at least 8 characters with an upper-case letter, a lower-case letter, a digit and a special character.',
    err_password_too_long: 'This password is too long: at most 72 bytes.',
    err_key_malformed: 'The relay could not read this key.',
    err_key_weak: 'This key is too weak for the relay (RSA under 3072 bits).',
    err_key_expired: 'This key has expired.',
    err_key_revoked: 'This key is revoked.',
    err_key_user_id: 'This key carries no user ID the relay accepts.',
    err_key_unusable: 'This key cannot sign or encrypt.',
    err_key_too_large: 'This key is too large for the relay: at most 4 user IDs, 8 subkeys and 256 bytes per user ID.',
    err_private_key: 'That was a private key; only the public key may be published. Nothing of it was kept.',
    err_bad_proof: 'The proof that this browser holds the key was refused. Try again.',
    err_unauthorized: 'You are not logged in (any more). Log in again.',
    err_bad_credentials: 'Wrong username or password.',
    err_account_disabled: 'This account was disabled by the relay\'s operator.',
    err_cross_origin: 'The relay refused a request from another site.',
    err_not_found: 'No such user.',
    err_no_key: 'This user has not published a key yet.',
    err_method_not_allowed: 'The relay refused the request.',
    err_username_taken: 'This username is taken. Choose another one.',
    err_username_confusable: 'This username looks too much like an existing one (0 and o, 1 and l, rn and m…). Choose another one.',
    err_body_too_large: 'That was too large for the relay.',
    err_unsupported_media_type: 'The relay refused the request.',
    err_bad_host: 'The relay does not answer under this address.',
    err_too_many_attempts: 'Too many failed logins for this name. Wait a while and try again.',
    err_rate_limited: 'Too many requests at once. Wait a moment and try again.',
    err_too_many_accounts: 'The relay has no room for more accounts.',
    err_internal: 'The relay had an internal error.',
    err_network: 'The relay could not be reached. Check the connection and try again.',
    err_connect: 'Could not connect to the relay. Check the connection and try again.',
    err_dropped: 'The connection to the relay dropped. Try again.',
    err_offline: 'Not connected to the relay right now.',
    err_blocked: 'Sending is blocked: a member\'s key changed; compare the safety code first.',
    err_no_peer: 'Cannot send yet: no verified member in the room.',
    err_e2e_waiting: 'Cannot send yet: waiting for the end-to-end keys of this room.',
    err_ended: 'The room has ended.',
    err_too_long: 'This message is too long.',

    // End-to-end protocol v2 notices (docs/e2e.md).
    e2e_v1_peer: 'Member {n} runs an older version of this page (protocol v1) that cannot read this room. Nothing is sent to them; they should reload the page.',
    e2e_missing: '{k} message(s) from member {n} did not arrive: the relay dropped them, or they come later out of order.',
    e2e_replayed: 'The relay delivered something from member {n} a second time (a replay); it was ignored.',
    e2e_old_epoch: 'The relay replayed old key material of this room; it was ignored.',
    e2e_fork: 'Member {n} started a key epoch that conflicts with ours; create a new room if messages stop arriving.',
    e2e_tampered: 'A message from member {n} was altered on the way and was refused.',
    e2e_other: 'The end-to-end keys of member {n} ran into a problem; the rest of the room is unaffected.',

    // Problems found while reading a frame.
    frame_unreadable: 'Something from member {n} could not be read and was skipped; the rest of the conversation is unaffected.',
    frame_unknown_kind: 'Member {n} sent something this page does not know (kind {k}); it was skipped.',
    frame_dialog_key: 'Member {n} announced a key inside a dialog; it was ignored: dialog keys come from the directory.',
    lost_entries: 'The relay dropped entries {from}…{to} before they reached this tab.',
    file_over_cap: 'A file from member {n} was refused: it is over the size limit.',
    file_wrong_size: 'The file {name} arrived with the wrong size and was not saved.',

    // Connection banner, seat after reload, presence of oneself and of a dialog's peer, the conversation's timer.
    conn_connecting: 'connecting…',
    conn_connected: 'connected',
    conn_reconnecting: 'connection lost · reconnecting…',
    conn_reconnecting_in: 'connection lost · next try in {n} s',
    conn_offline: 'offline · trying again…',
    conn_offline_in: 'offline · next try in {n} s',
    composer_connecting: 'Connecting: what you send now goes out once the connection is up.',
    composer_reconnecting: 'Reconnecting: what you send now waits in this tab and goes out when the connection returns.',
    composer_offline: 'Offline: what you send now waits in this tab and goes out when the connection returns; if it is not back within the reconnect grace (about 2 minutes), the room ends and it is lost.',
    you_away: 'You were disconnected',
    you_back: 'You are back',
    user_joined: '{u} joined',
    user_left: '{u} left',
    user_away: '{u} lost connection',
    user_back: '{u} is back',
    timer_on: 'Messages disappear after {d} (set by {who})',
    timer_none: 'Messages no longer disappear (set by {who})',
    ttl_left: 'disappears in',
    reload_resumed: 'This page was reloaded and took its seat back. Messages shown before the reload are not kept.',
    reload_asked: 'Asked {who} for {k} message(s) that arrived while this page reloaded.',
    reload_lost: 'Messages {who} sent while this page reloaded were sealed with keys that were deleted with the old page (forward secrecy): they can no longer be read here. {who} is asked to send them again; what that page no longer keeps is lost.',
    reload_resent: 'Sent again {k} of the {n} message(s) that {who} asked for after reloading the page.',

    // Mailbox, message states and key changes in dialogs (one block).
    state_pending: 'Sending…',
    state_sent: 'Sent',
    state_in_mailbox: '(waiting in the relay)',
    state_delivered: 'Delivered',
    state_failed: 'Not sent',
    state_waiting: 'Waiting for the contact: it goes when they are online or have published new one-time keys',
    err_waiting_contact: 'The contact has no one-time key left for messages that wait; this one goes when they are online.',
    err_prekeys_off: 'This relay keeps no one-time keys (it has no mailbox).',
    err_bad_prekeys: 'The relay refused the one-time keys as malformed.',
    err_too_many_prekeys: 'More one-time keys than the relay keeps per user.',
    err_no_prekeys: 'The contact has no one-time key left; the message waits until they are online.',
    err_prekeys_held: 'You hold as many of this contact\'s one-time keys as you may until they read your messages.',
    err_prekeys_relay_full: 'The relay holds as many one-time keys as it may; try again later.',
    mail_old_format: 'A waiting message from {n} is in the old format (before an upgrade, without forward secrecy) and was not read.',
    mail_replayed: 'A waiting message from {n} used a one-time key that was used before or that this browser does not hold (a replay, or a message for another device of yours: the terminal or another browser, the one you had logged in with last); it cannot be read here and stays in the relay for that device.',
    retry: 'Retry',
    route_mailbox: '{u} is away: what you send waits in the relay\'s memory until they come back (at most 7 days). A restart of the relay loses it. It can be read only on the device {u} logged in with last (a browser or the terminal).',
    route_blocked: 'Sending to {u} is blocked: their key changed. Compare the safety code and accept the new key first.',
    unread_label: 'unread messages',
    err_mailbox_full: 'The other user\'s mailbox is full; nothing in it was lost. Try again after they read it.',
    err_mailbox_relay_full: 'The relay\'s mailbox is full. Try again later.',
    err_mailbox_off: 'This relay keeps no messages for contacts who are away.',
    err_bad_ttl: 'The relay does not keep a message that long.',
    err_key_changed: 'The other user\'s key changed before this message reached them; accept the new key and send again.',
    err_revoked: 'The other user\'s key was withdrawn; this message will not reach them.',
  },
  ru: {
    // Page and language switch. `lang` labels the switch with the language it switches to.
    title: 'cleanrelay',
    tagline: 'Сквозное шифрование: сервер-ретранслятор видит только шифротекст.',
    lang: 'English',
    lang_code: 'en',
    lang_switch: 'Переключить интерфейс на английский',
    refuse_title: 'В этом браузере cleanrelay не может работать безопасно',
    refuse_subtle: 'Нет Web Crypto (crypto.subtle), поэтому ключи здесь создать нельзя.',
    refuse_secure: 'Страница открыта не в защищённом контексте. Откройте её по https://, http://localhost или через адрес .onion.',
    refuse_worker: 'Web Workers недоступны, шифрование заморозило бы страницу.',
    refuse_crypto: 'Модуль шифрования не запустился.',
    problem: 'Проблема',

    // Home and joining.
    anon_title: 'Анонимная комната',
    anon_text: 'Без учётной записи. Браузер создаёт одноразовый ключ; ссылка-приглашение содержит секрет, который никогда не попадает на сервер. Закрытие вкладки уничтожает ключи.',
    key_type: 'Тип ключа',
    key_rsa: 'RSA-4096 (по умолчанию, совместим с GnuPG)',
    key_curve: 'Curve25519 (быстрый)',
    acct_key_curve: 'Curve25519 (по умолчанию: быстрый; GnuPG 2.2 и новее)',
    acct_key_rsa: 'RSA-4096 (медленно начинает разговор в Tor Browser; любой GnuPG)',
    acct_key_v6: 'Ed25519/X25519, OpenPGP v6 (не для GnuPG)',
    acct_key_hint: 'Ключ OpenPGP v6 (RFC 9580) так же быстр, как Curve25519, и у него длиннее отпечаток, но GnuPG 2.2 и 2.4 не могут его импортировать: экспортированная пара ключей работает в cleanrelay и в программах RFC 9580, например Sequoia, но не в gpg.',
    max_members: 'Участников',
    create_room: 'Создать комнату',
    join_title: 'Вход в анонимную комнату',
    join_room: 'Войти в комнату',
    accounts_title: 'Учётные записи',
    accounts_intro: 'Зарегистрируйтесь, опубликуйте свой ключ OpenPGP, находите людей по имени и переписывайтесь в диалогах со сквозным шифрованием.',
    making_key: 'Создаётся одноразовый ключ…',
    connecting: 'Подключение к серверу…',
    checking_invite: 'Проверяем приглашение…',
    invite_bad: 'Ссылка-приглашение повреждена: часть её потеряна или набрана с ошибкой. Попросите ссылку ещё раз.',

    // Room screen.
    invite_label: 'Ссылка-приглашение: передайте её по надёжному каналу. Войти может любой, у кого она есть.',
    copy: 'Копировать',
    copied: 'Скопировано',
    waiting_peer: 'Ждём собеседника…',
    room_full_now: 'Комната заполнена; по ссылке-приглашению больше никто не войдёт.',
    e2e_label: 'Сквозное шифрование',
    keys_button: 'Ключи',
    online: 'подключено',
    offline: 'связь потеряна, переподключение…',
    resumed: 'связь восстановлена',
    message_label: 'Сообщение',
    message_ph: 'Напишите сообщение',
    log_label: 'Сообщения',
    send: 'Отправить',
    timer: 'Исчезающие сообщения (для всех)',
    timer_off: 'никогда',
    attach: 'Отправить файл',
    burn: 'Сжечь комнату',
    burn_confirm: 'Завершить комнату для всех сейчас? Все сообщения исчезнут.',
    new_room: 'Начать заново',
    back: 'Назад',
    dialog_with: 'Диалог с {u}',
    you: 'вы',
    member_n: 'участник {n}',
    unverified: 'подпись НЕ проверена',
    storage_note: 'Tor Browser всё забывает при закрытии. Экспортируйте пару ключей, если хотите её сохранить.',
    storage_note_anon: 'Tor Browser всё забывает при закрытии; ключи этой комнаты исчезнут вместе с вкладкой.',

    // Presence and system lines.
    joined: 'Участник {n} вошёл',
    left: 'Участник {n} вышел',
    away: 'Участник {n} потерял связь',
    member_back: 'Участник {n} вернулся',
    peer_key_ok: 'Участник {n}: ключ получен и привязан к секрету приглашения',
    peer_key_dir: 'Ключ {u}: {fp} (закреплён)',

    // How a room ends (the `closed` reasons of the protocol, and the client's own).
    ended_burned: 'Комната сожжена. Всё, что в ней было, удалено.',
    ended_expired: 'Комната достигла предельного срока жизни на сервере и закрыта. Всё, что в ней было, удалено; чтобы продолжить, создайте новую.',
    ended_shutdown: 'Сервер останавливается, поэтому комната завершена. Всё, что в ней было, удалено; попробуйте снова, когда сервер вернётся.',
    ended_revoked: 'Оператор сервера отозвал вашу учётную запись или ключ, поэтому комната для вас завершена.',
    ended_moved: 'Этот разговор открыт в другой вкладке и продолжается там.',
    ended_timeout: 'Связи не было слишком долго, и сервер отдал ваше место.',
    ended_gone: 'Комнаты больше нет на сервере (она завершилась или сервер перезапустился).',
    ended_other: 'Комната завершена.',

    // Files.
    file_from: 'Файл',
    save: 'Сохранить',
    receiving: 'Получение',
    sending: 'Отправка',
    file_sent: 'Отправлен',
    too_big: 'Файл слишком большой: не более {n}.',

    // Keys and verification.
    keys_title: 'Ключи в этой комнате',
    your_key: 'Ваш ключ',
    peer_key: 'Участник {n}',
    algorithm: 'Алгоритм',
    created: 'Создан',
    fingerprint: 'Отпечаток',
    safety: 'Код безопасности',
    armored: 'Открытый ключ',
    export_key: 'Экспорт пары ключей (ZIP)',
    export_pass: 'Пароль для защиты экспортируемого закрытого ключа',
    export_do: 'Экспортировать',
    close: 'Закрыть',
    verify: 'Проверить',
    verify_who: 'Проверка: {who}',
    verify_text: 'Сверьте этот код безопасности с собеседником ({who}) лично или по надёжному каналу либо отсканируйте QR-код с его экрана. Если коды совпадают, между вами никого нет.',
    your_fp: 'Ваш отпечаток',
    their_fp: 'Отпечаток: {who}',
    qr_label: 'QR-код с кодом безопасности',
    mark_verified: 'Отметить как проверенный',
    unmark_verified: 'Снять отметку о проверке',
    verified: 'Проверен',
    verified_who: 'Вы проверили: {who}',
    not_verified: 'Не проверен',
    keychange_title: 'Внимание: ключ участника изменился',
    keychange_text: 'Участник {n} прислал другой ключ, не тот, что закреплён за ним. Ничего не будет отправлено, пока вы не решите. Сверьте новый код безопасности с ним по другому каналу.',
    dir_keychange_text: 'Каталог теперь показывает для {u} другой ключ, не тот, что вы закрепили. Возможно, сервер пытается читать ваши сообщения. Сверьте код безопасности с {u} по другому каналу, прежде чем доверять.',
    old_fp: 'Закреплённый отпечаток',
    new_fp: 'Новый отпечаток',
    trust_new: 'Я сверил код: доверять новому ключу',
    forged: 'Отклонён ключ, созданный не с секретом этого приглашения. Сервер или кто-то ещё пытался подменить ключи.',
    cancel: 'Отмена',

    // Forms and their checks.
    required: 'Заполните это поле.',
    email_bad: 'Это не адрес эл. почты; пишите его так: name@example.org.',
    username_bad: 'От 3 до 32 символов: латинские буквы, цифры и . _ - между ними.',
    missing_length: 'не менее 8 символов',
    missing_upper: 'заглавная буква',
    missing_lower: 'строчная буква',
    missing_digit: 'цифра',
    missing_special: 'специальный символ',
    missing_prefix: 'В пароле не хватает: ',
    missing_prefix_pass: 'В пароле ключа не хватает: ',
    passphrase_or_long: ' — или возьмите длинную фразу из 15 и более символов, например несколько слов.',
    password_rule: 'Не менее 8 символов: заглавная и строчная буквы, цифра и специальный символ.',
    passphrase_rule: 'Либо 15 и более символов (несколько слов легко запомнить), либо не менее 8: заглавная и строчная буквы, цифра и специальный символ.',

    // Account screens.
    login: 'Войти',
    register: 'Регистрация',
    show: 'Показать',
    hide: 'Скрыть',
    show_password: 'Показать пароль',
    username: 'Имя пользователя',
    full_name: 'Полное имя',
    email: 'Эл. почта (необязательно)',
    password: 'Пароль',
    registered: 'Учётная запись создана. Теперь войдите.',
    unlock_title: 'Разблокируйте ключ',
    logged_in_as: 'Вы вошли как {u}',
    passphrase: 'Пароль ключа',
    unlock: 'Разблокировать',
    forgot: 'Забыл пароль: создать новую пару ключей',
    forgot_warning: 'Новая пара ключей заменит опубликованный ключ. Сообщения, зашифрованные старым ключом, больше не прочитать. Продолжить?',
    wrong_passphrase: 'Неверный пароль.',
    keysetup_title: 'Создайте пару ключей',
    keysetup_text: 'Браузер создаёт пару ключей OpenPGP. Закрытый ключ остаётся в этом браузере, зашифрованный вашим паролем; открытый ключ публикуется, чтобы вас могли найти.',
    generate: 'Создать пару ключей',
    import_title: 'Или импортируйте пару ключей (ZIP)',
    import_file: 'ZIP с парой ключей',
    import: 'Импортировать',
    download_zip: 'Скачать ZIP',
    key_ready: 'Пара ключей готова',
    continue: 'Продолжить',
    search_label: 'Поиск пользователей по имени',
    search_ph: 'Не менее 2 букв',
    searching: 'Ищем…',
    no_user: 'Пользователь не найден.',
    my_key: 'Мой ключ',
    logout: 'Выйти',
    dialogs: 'Диалоги',
    no_dialogs: 'Диалогов пока нет: найдите пользователя ниже.',
    new_dialog: 'новый',
    find_user: 'Найти пользователя',
    regenerate: 'Создать новую пару ключей',
    dir_mismatch: 'Каталог ответил ключом с другим отпечатком. Ничего не открыто.',

    // Errors by code: the relay's protocol (docs/protocol.md §4.3) and accounts API (docs/accounts.md §9),
    // then the client's own.
    err_unknown: 'Сервер отклонил запрос (код {code}).',
    err_bad_request: 'Сервер не принял запрос. Перезагрузите страницу и попробуйте снова.',
    err_unknown_type: 'Страница и сервер говорят на разных версиях протокола. Перезагрузите страницу.',
    err_bad_frame: 'Сообщение было повреждено, и сервер его отклонил.',
    err_not_member: 'Эта вкладка больше не участник комнаты.',
    err_denied: 'Этой комнаты больше нет, или ссылка неверна. Комната исчезает, когда её сжигают, когда истекает её срок или когда все вышли; попросите новое приглашение.',
    err_room_full: 'Комната заполнена: все, для кого она создана, уже вошли. Попросите новое приглашение.',
    err_too_many_rooms: 'В этой вкладке уже столько комнат, сколько разрешает сервер. Сначала выйдите из одной.',
    err_bad_token: 'Сервер больше не помнит это место в комнате.',
    err_busy: 'Сервер сейчас перегружен. Попробуйте через минуту.',
    err_already_member: 'Эта вкладка уже в этой комнате.',
    err_over_memory: 'Серверу сейчас не хватает памяти. Попробуйте через минуту.',
    err_control_too_large: 'Запрос слишком велик для сервера.',
    err_bad_json: 'Сервер не принял запрос. Перезагрузите страницу и попробуйте снова.',
    err_invalid_username: 'Такое имя пользователя недопустимо: от 3 до 32 символов из латинских букв, цифр и . _ -, в начале и в конце буква или цифра.',
    err_invalid_full_name: 'Такое полное имя недопустимо: от 1 до 64 символов, без невидимых символов и двойных пробелов.',
    err_invalid_email: 'Такой адрес эл. почты недопустим; пишите его так: name@example.org.',
    err_weak_password: 'Сервер отклонил пароль: нужно не менее 8 символов, заглавная и строчная буквы, цифра и специальный символ.',
    err_password_too_long: 'Пароль слишком длинный: не более 72 байт.',
    err_key_malformed: 'Сервер не смог прочитать этот ключ.',
    err_key_weak: 'Ключ слишком слабый для сервера (RSA меньше 3072 бит).',
    err_key_expired: 'Срок действия ключа истёк.',
    err_key_revoked: 'Ключ отозван.',
    err_key_user_id: 'В ключе нет идентификатора пользователя, который принимает сервер.',
    err_key_unusable: 'Этим ключом нельзя подписывать или шифровать.',
    err_key_too_large: 'Ключ слишком велик для сервера: не более 4 идентификаторов пользователя, 8 подключей и 256 байт на идентификатор.',
    err_private_key: 'Это был закрытый ключ; публиковать можно только открытый. Ничего из него не сохранено.',
    err_bad_proof: 'Сервер не принял доказательство того, что ключ у этого браузера. Попробуйте снова.',
    err_unauthorized: 'Вы не вошли (или вход истёк). Войдите снова.',
    err_bad_credentials: 'Неверное имя пользователя или пароль.',
    err_account_disabled: 'Оператор сервера отключил эту учётную запись.',
    err_cross_origin: 'Сервер отклонил запрос с другого сайта.',
    err_not_found: 'Такого пользователя нет.',
    err_no_key: 'Этот пользователь ещё не опубликовал ключ.',
    err_method_not_allowed: 'Сервер отклонил запрос.',
    err_username_taken: 'Это имя пользователя занято. Выберите другое.',
    err_username_confusable: 'Это имя слишком похоже на уже существующее (0 и o, 1 и l, rn и m…). Выберите другое.',
    err_body_too_large: 'Это слишком велико для сервера.',
    err_unsupported_media_type: 'Сервер отклонил запрос.',
    err_bad_host: 'Сервер не отвечает по этому адресу.',
    err_too_many_attempts: 'Слишком много неудачных входов под этим именем. Подождите и попробуйте снова.',
    err_rate_limited: 'Слишком много запросов подряд. Подождите немного и попробуйте снова.',
    err_too_many_accounts: 'На сервере больше нет места для учётных записей.',
    err_internal: 'Внутренняя ошибка сервера.',
    err_network: 'Не удалось связаться с сервером. Проверьте подключение и попробуйте снова.',
    err_connect: 'Не удалось подключиться к серверу. Проверьте подключение и попробуйте снова.',
    err_dropped: 'Связь с сервером прервалась. Попробуйте снова.',
    err_offline: 'Сейчас нет связи с сервером.',
    err_blocked: 'Заблокировано: ключ участника изменился; сначала сверьте код безопасности.',
    err_no_peer: 'Пока нельзя отправить: в комнате нет проверенного участника.',
    err_e2e_waiting: 'Пока нельзя отправить: ждём сквозных ключей этой комнаты.',
    err_ended: 'Комната завершена.',
    err_too_long: 'Сообщение слишком длинное.',

    // End-to-end protocol v2 notices (docs/e2e.md).
    e2e_v1_peer: 'У участника {n} старая версия страницы (протокол v1), она не может читать эту комнату. Ему ничего не отправляется; пусть перезагрузит страницу.',
    e2e_missing: 'Не дошло сообщений от участника {n}: {k}. Сервер их потерял, или они придут позже не по порядку.',
    e2e_replayed: 'Сервер повторно доставил данные от участника {n} (повтор); они проигнорированы.',
    e2e_old_epoch: 'Сервер повторил старые ключевые данные этой комнаты; они проигнорированы.',
    e2e_fork: 'Участник {n} начал эпоху ключей, которая расходится с нашей; если сообщения перестанут приходить, создайте новую комнату.',
    e2e_tampered: 'Сообщение от участника {n} было изменено по дороге и отклонено.',
    e2e_other: 'Со сквозными ключами участника {n} возникла проблема; остальная комната не затронута.',

    // Проблемы при чтении кадра.
    frame_unreadable: 'Данные от участника {n} не удалось прочитать, они пропущены; остальная переписка не затронута.',
    frame_unknown_kind: 'Участник {n} прислал то, чего эта страница не знает (вид {k}); это пропущено.',
    frame_dialog_key: 'Участник {n} объявил ключ внутри диалога; это проигнорировано: ключи диалога берутся из каталога.',
    lost_entries: 'Сервер потерял записи {from}…{to}, не доставив их этой вкладке.',
    file_over_cap: 'Файл от участника {n} отклонён: он больше допустимого размера.',
    file_wrong_size: 'Файл {name} пришёл не того размера и не сохранён.',

    // Баннер связи, место после перезагрузки, присутствие себя и собеседника в диалоге, таймер разговора.
    conn_connecting: 'подключение…',
    conn_connected: 'подключено',
    conn_reconnecting: 'связь потеряна · переподключение…',
    conn_reconnecting_in: 'связь потеряна · следующая попытка через {n} с',
    conn_offline: 'нет связи · пробуем снова…',
    conn_offline_in: 'нет связи · следующая попытка через {n} с',
    composer_connecting: 'Подключение: то, что вы отправите сейчас, уйдёт, когда связь установится.',
    composer_reconnecting: 'Переподключение: то, что вы отправите сейчас, подождёт в этой вкладке и уйдёт, когда связь вернётся.',
    composer_offline: 'Нет связи: то, что вы отправите сейчас, подождёт в этой вкладке и уйдёт, когда связь вернётся; если она не вернётся за время ожидания (около 2 минут), комната закончится и это пропадёт.',
    you_away: 'Вы потеряли связь',
    you_back: 'Вы снова на связи',
    user_joined: '{u}: вход в диалог',
    user_left: '{u}: выход из диалога',
    user_away: '{u}: связь потеряна',
    user_back: '{u}: снова на связи',
    timer_on: 'Сообщения исчезают через {d} (настройка: {who})',
    timer_none: 'Сообщения больше не исчезают (настройка: {who})',
    ttl_left: 'исчезнет через',
    reload_resumed: 'Страница перезагружена и вернула своё место. Сообщения, показанные до перезагрузки, не сохраняются.',
    reload_asked: 'Запрошено повторно сообщений, пришедших во время перезагрузки: {k} (у кого: {who}).',
    reload_lost: 'Сообщения, которые {who} отправил(а) во время перезагрузки этой страницы, зашифрованы ключами, удалёнными вместе со старой страницей (прямая секретность): прочитать их здесь больше нельзя. У {who} запрошена повторная отправка; то, чего та страница уже не хранит, потеряно.',
    reload_resent: 'Страница собеседника ({who}) перезагружена: заново отправлено {k} из {n} запрошенных сообщений.',

    // Почтовый ящик, состояния сообщений и смена ключей в диалогах (один блок).
    state_pending: 'Отправляется…',
    state_sent: 'Отправлено',
    state_in_mailbox: '(ждёт на сервере)',
    state_delivered: 'Доставлено',
    state_failed: 'Не отправлено',
    state_waiting: 'Ждёт собеседника: уйдёт, когда он будет в сети или опубликует новые одноразовые ключи',
    err_waiting_contact: 'У собеседника не осталось одноразовых ключей для ожидающих сообщений; это уйдёт, когда он будет в сети.',
    err_prekeys_off: 'Этот сервер не хранит одноразовые ключи (у него нет почтового ящика).',
    err_bad_prekeys: 'Сервер отклонил одноразовые ключи как повреждённые.',
    err_too_many_prekeys: 'Одноразовых ключей больше, чем сервер хранит для одного пользователя.',
    err_no_prekeys: 'У собеседника не осталось одноразовых ключей; сообщение ждёт, пока он будет в сети.',
    err_prekeys_held: 'У вас столько одноразовых ключей этого собеседника, сколько можно, пока он не прочтёт ваши сообщения.',
    err_prekeys_relay_full: 'Сервер хранит максимум одноразовых ключей; попробуйте позже.',
    mail_old_format: 'Ожидавшее сообщение от {n} в старом формате (до обновления, без прямой секретности) и не прочитано.',
    mail_replayed: 'Ожидавшее сообщение от {n} использует одноразовый ключ, который уже был использован или которого нет в этом браузере (повтор или сообщение для другого вашего устройства: терминала или другого браузера, с которого вы входили последним); здесь его нельзя прочитать, оно остаётся на сервере для того устройства.',
    retry: 'Повторить',
    route_mailbox: '{u} не в сети: отправленное ждёт в памяти сервера, пока собеседник не вернётся (не дольше 7 дней). Перезапуск сервера его стирает. Прочитать его можно только на устройстве, с которого {u} входил последним (в браузере или в терминале).',
    route_blocked: 'Отправка пользователю {u} заблокирована: его ключ сменился. Сначала сверьте код безопасности и примите новый ключ.',
    unread_label: 'непрочитанные сообщения',
    err_mailbox_full: 'Почтовый ящик собеседника переполнен; ничего из него не потеряно. Попробуйте снова, когда он прочитает.',
    err_mailbox_relay_full: 'Почтовый ящик сервера переполнен. Попробуйте позже.',
    err_mailbox_off: 'Этот сервер не хранит сообщения для собеседников не в сети.',
    err_bad_ttl: 'Сервер не хранит сообщения так долго.',
    err_key_changed: 'Ключ собеседника сменился раньше, чем сообщение до него дошло; примите новый ключ и отправьте снова.',
    err_revoked: 'Ключ собеседника отозван; это сообщение до него не дойдёт.',
  },
};

export const LANGS = Object.keys(STRINGS);
const KEPT = 'cleanrelay.lang';

let lang = 'en';

// initialLang is the language kept for this session, else the browser's.
export function initialLang() {
  let kept = null;
  try {
    kept = sessionStorage.getItem(KEPT);
  } catch {
    kept = null;
  }
  if (kept && STRINGS[kept]) return kept;
  return (globalThis.navigator?.language || 'en').startsWith('ru') ? 'ru' : 'en';
}

// setLang switches the page to l, keeps the choice for the session and re-renders every translated node.
export function setLang(l) {
  lang = STRINGS[l] ? l : 'en';
  try {
    sessionStorage.setItem(KEPT, lang);
  } catch {
    /* storage off: the choice lasts until reload */
  }
  document.documentElement.lang = lang;
  for (const el of document.querySelectorAll('[data-i18n]')) el.textContent = t(el.dataset.i18n, el.dataset.i18nVars ? JSON.parse(el.dataset.i18nVars) : {});
  for (const el of document.querySelectorAll('[data-i18n-ph]')) el.placeholder = t(el.dataset.i18nPh);
  for (const el of document.querySelectorAll('[data-i18n-label]')) el.setAttribute('aria-label', t(el.dataset.i18nLabel, el.dataset.i18nVars ? JSON.parse(el.dataset.i18nVars) : {}));
  for (const el of document.querySelectorAll('[data-fmt]')) el.textContent = fmt(el.dataset.fmt, Number(el.dataset.value));
}

export function getLang() {
  return lang;
}

// t returns the string for key in the current language, with {name} filled from vars. A var may itself be a
// translated phrase, {t: key, ...vars}, so a name like "member 2" follows a language switch too.
export function t(key, vars = {}) {
  const s = STRINGS[lang][key] ?? STRINGS.en[key] ?? key;
  return s.replace(/\{(\w+)\}/g, (_, k) => {
    const v = vars[k];
    return v && typeof v === 'object' ? t(v.t, v) : String(v ?? '');
  });
}

export function hasKey(key) {
  return LANGS.every((l) => key in STRINGS[l]);
}

// errorText is the sentence for an error: by its code when it has one (a relay error or the client's own), so
// the relay's English `msg` never reaches the page; a client error without a code keeps its own message.
export function errorText(e) {
  const code = e?.code;
  if (code && hasKey(`err_${code}`)) return t(`err_${code}`);
  if (code) return t('err_unknown', { code });
  return String(e?.message ?? e);
}

// fmt formats a number for the page: 'size' (bytes), 'date' and 'time' (ms since the epoch), 'dur' (seconds).
export function fmt(kind, v, l = lang) {
  switch (kind) {
    case 'size': {
      const [unit, n] = v >= 1048576 ? ['megabyte', v / 1048576] : v >= 1024 ? ['kilobyte', v / 1024] : ['byte', v];
      return new Intl.NumberFormat(l, { style: 'unit', unit, unitDisplay: 'short', maximumFractionDigits: unit === 'byte' ? 0 : 1 }).format(n);
    }
    case 'date':
      return new Intl.DateTimeFormat(l, { dateStyle: 'medium', timeStyle: 'short' }).format(new Date(v));
    case 'time':
      return new Intl.DateTimeFormat(l, { hour: '2-digit', minute: '2-digit' }).format(new Date(v));
    case 'dur': {
      const [unit, n] = v >= 3600 ? ['hour', v / 3600] : v >= 60 ? ['minute', v / 60] : ['second', v];
      return new Intl.NumberFormat(l, { style: 'unit', unit, unitDisplay: 'long', maximumFractionDigits: 1 }).format(n);
    }
    default:
      throw new RangeError(`unknown format ${kind}`);
  }
}

export { STRINGS };
