<?php
// mailplane: what PHP's built-in server may hand out of Roundcube — the same as
// Roundcube's public_html layout allows a web server to serve: the entry point and the
// static files of the skins, scripts and plugins.  Everything else is 404 (configuration,
// logs, temporary files, program code, other PHP files).
$path = rawurldecode((string) parse_url($_SERVER['REQUEST_URI'], PHP_URL_PATH));
if ($path === '/' || $path === '/index.php') {
    $_SERVER['SCRIPT_NAME'] = '/index.php';
    $_SERVER['PHP_SELF'] = '/index.php';
    chdir(__DIR__ . '/public_html');
    require __DIR__ . '/public_html/index.php';
    return true;
}
$static = '#^/(skins/[a-z0-9_-]+|program/(js|resources)|plugins/[a-z0-9_]+)/'
        . '[A-Za-z0-9_./-]+\.(css|js|map|png|gif|jpe?g|svg|ico|woff2?|ttf|eot|html|json|mp3|wav|tiff|webp|pdf)$#';
if (preg_match($static, $path) && strpos($path, '..') === false
        && is_file(__DIR__ . '/public_html' . $path)) {
    return false;  // the built-in server sends the file itself
}
http_response_code(404);
header('Content-Type: text/plain; charset=utf-8');
echo "Not found\n";
return true;
