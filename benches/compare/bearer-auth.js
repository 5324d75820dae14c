// njs for benches/compare/bearer-nginx-auth.conf.in (auth_request handler): the introspection
// answer (RFC 7662, through the cached /_introspect subrequest) must say "active": true and
// grant the required scope. 204 lets the request through; 401, 403 and 500 are what
// auth_request passes on to the client.
var REQUIRED_SCOPE = 'profile';

function check(r) {
    if (!r.variables.bearer_token) {
        r.return(401);
        return;
    }
    r.subrequest('/_introspect', function (reply) {
        if (reply.status !== 200) {
            r.return(500); // fail closed
            return;
        }
        var answer;
        try {
            answer = JSON.parse(reply.responseText);
        } catch (e) {
            r.return(500);
            return;
        }
        if (answer.active !== true) {
            r.return(401);
            return;
        }
        var scopes = typeof answer.scope === 'string' ? answer.scope.split(' ') : [];
        r.return(scopes.indexOf(REQUIRED_SCOPE) >= 0 ? 204 : 403);
    });
}

export default { check };
