package config

import (
	"net/url"
	"strings"

	"gopkg.in/yaml.v3"
)

// Redacted stands in for a secret in a definition shown to an operator.
const Redacted = "[redacted]"

// secretKeys are the key names, in any sink kind, whose value is a
// credential; header values are all treated as one.
var secretKeys = []string{"secret", "token", "password", "passwd", "authorization", "api_key", "apikey"}

// RedactSource returns a sink definition as written with every credential
// replaced by Redacted: values of secret-looking keys, every header value,
// and the password of any URL. A ${NAME} reference is kept, since it names
// a variable rather than holding its value. A definition that does not
// parse is not shown at all.
func RedactSource(def string) string {
	var root yaml.Node
	if err := yaml.Unmarshal([]byte(def), &root); err != nil {
		return Redacted
	}
	redactNode(&root, false)
	out, err := yaml.Marshal(&root)
	if err != nil {
		return Redacted
	}
	return string(out)
}

func redactNode(n *yaml.Node, secret bool) {
	switch n.Kind {
	case yaml.DocumentNode, yaml.SequenceNode:
		for _, c := range n.Content {
			redactNode(c, secret)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			key := strings.ToLower(n.Content[i].Value)
			redactNode(n.Content[i+1], secret || key == "headers" || isSecretKey(key))
		}
	case yaml.ScalarNode:
		n.HeadComment, n.LineComment, n.FootComment = "", "", ""
		switch {
		case secret && !isEnvRef(n.Value):
			n.Value, n.Tag, n.Style = Redacted, "!!str", 0
		case strings.Contains(n.Value, "://"):
			if u, err := url.Parse(n.Value); err == nil && u.User != nil {
				if _, has := u.User.Password(); has {
					u.User = url.UserPassword(u.User.Username(), "xxxxx")
					n.Value = u.String()
				}
			}
		}
	}
}

func isSecretKey(key string) bool {
	for _, s := range secretKeys {
		if strings.Contains(key, s) {
			return true
		}
	}
	return false
}

func isEnvRef(v string) bool {
	return strings.HasPrefix(v, "${") && strings.HasSuffix(v, "}") && strings.Count(v, "${") == 1
}
