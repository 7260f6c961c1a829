package failure

import (
	"bytes"
	"errors"
	"fmt"
	"io"

	"gopkg.in/yaml.v3"
)

// maxYAML bounds a rules or relay-points file.
const maxYAML = 256 << 10

// maxYAMLDepth bounds nesting in those files.
const maxYAMLDepth = 32

// errYAMLShape reports input refused before decoding.
var errYAMLShape = errors.New("yaml")

// checkYAML refuses what could make decoding slow or huge before any value
// is built: files over maxYAML, nesting deeper than maxYAMLDepth, and
// anchors and aliases (a few lines of aliases expand to millions of nodes;
// configuration files do not need them). Parsing into nodes does not expand
// aliases, so this check is linear in the input.
func checkYAML(data []byte) error {
	if len(data) > maxYAML {
		return fmt.Errorf("%w: file larger than %d bytes", errYAMLShape, maxYAML)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var n yaml.Node
		err := dec.Decode(&n)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := walkYAML(&n, 0); err != nil {
			return err
		}
	}
}

func walkYAML(n *yaml.Node, depth int) error {
	if depth > maxYAMLDepth {
		return fmt.Errorf("%w: line %d: nested deeper than %d", errYAMLShape, n.Line, maxYAMLDepth)
	}
	if n.Kind == yaml.AliasNode || n.Anchor != "" {
		return fmt.Errorf("%w: line %d: anchors and aliases are not supported", errYAMLShape, n.Line)
	}
	for _, c := range n.Content {
		if err := walkYAML(c, depth+1); err != nil {
			return err
		}
	}
	return nil
}
