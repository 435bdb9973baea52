<?php

/**
 * mailplane: どこでもメール's sign-in (SPEC §9b), written for mailplane's webmail.
 *
 * - authenticate: the user name (the mail address or the POP account) and the POP
 *   password go to mailplane's login check before Roundcube logs in to IMAP.  The check is
 *   the one POP3 and submission use, under mailplane's login guard, counted against the
 *   browser's address.  It answers with the address, which becomes the Roundcube user —
 *   and so the sender identity, the only sender submission accepts for it.  A wrong
 *   password, a suspended address or a lock is told in the customer's words, and no IMAP
 *   login is tried.
 * - storage_connect: the browser's address goes to Dovecot in the IMAP ID command
 *   (x-originating-ip, honoured from Dovecot's login_trusted_networks), so every later
 *   IMAP login of the session is counted against the customer's client, not the webmail
 *   host.
 */
class mailplane extends rcube_plugin
{
    public $task = '.*';

    public function init()
    {
        $this->add_texts('localization/');
        $this->add_hook('authenticate', [$this, 'authenticate']);
        $this->add_hook('storage_connect', [$this, 'storage_connect']);
    }

    public function authenticate($args)
    {
        if (empty($args['valid'])) {
            return $args;
        }
        $answer = $this->ask($args['user'], $args['pass']);
        $outcome = $answer['outcome'];
        if ($outcome === 'ok' && !empty($answer['fields']['user'])) {
            $args['user'] = $answer['fields']['user'];
            return $args;
        }
        $args['abort'] = true;
        $labels = [
            'fail'     => 'mailplane.loginfailed',
            'disabled' => 'mailplane.suspended',
            'locked'   => 'mailplane.locked',
        ];
        $args['error'] = isset($labels[$outcome]) ? $labels[$outcome] : 'mailplane.unavailable';
        return $args;
    }

    public function storage_connect($args)
    {
        $args['preauth_ident'] = ['x-originating-ip' => rcube_utils::remote_addr()];
        return $args;
    }

    /** One call to the login check: ['outcome' => …, 'fields' => [key => value]]. */
    private function ask($user, $password)
    {
        $rcmail = rcmail::get_instance();
        $body = http_build_query([
            'user'     => (string) $user,
            'password' => (string) $password,
            'ip'       => rcube_utils::remote_addr(),
            'service'  => 'webmail',
        ]);
        $context = stream_context_create(['http' => [
            'method'        => 'POST',
            'header'        => 'Authorization: Bearer ' . $rcmail->config->get('mailplane_login_check_secret') . "\r\n"
                             . "Content-Type: application/x-www-form-urlencoded\r\n"
                             . 'Content-Length: ' . strlen($body) . "\r\n",
            'content'       => $body,
            'timeout'       => 20,
            'ignore_errors' => true,
        ]]);
        $text = @file_get_contents($rcmail->config->get('mailplane_login_check_url'), false, $context);
        $status = isset($http_response_header[0]) ? $http_response_header[0] : '';
        if ($text === false || !preg_match('#^HTTP/\S+ 200#', $status)) {
            rcube::raise_error(['code' => 500, 'message' => "mailplane login check: $status"], true, false);
            return ['outcome' => 'unavailable', 'fields' => []];
        }
        $lines = explode("\n", trim($text));
        $fields = [];
        foreach (array_slice($lines, 1) as $line) {
            $pair = explode('=', $line, 2);
            if (count($pair) == 2) {
                $fields[$pair[0]] = $pair[1];
            }
        }
        return ['outcome' => trim($lines[0]), 'fields' => $fields];
    }
}
