package models

import (
	"fmt"
	"sort"
	"strings"
)

// prefixAlias is an alias ending in "*": every name it begins.
type prefixAlias struct {
	prefix string
	m      *Model
}

// addAliases adds every model's aliases: an exact one names one model
// and no model's name; of prefixes, the longest that begins a name wins.
func (c *Catalog) addAliases() error {
	seen := map[string]string{}
	for _, m := range c.list {
		for _, a := range m.Aliases {
			prefix, isPrefix := strings.CutSuffix(a, "*")
			switch {
			case a == "" || strings.Contains(prefix, "*"):
				return fmt.Errorf("model %s: alias %q: want a name, or a prefix ending in one *", m.Name, a)
			case c.byName[a] != nil && c.byName[a].Name == a:
				return fmt.Errorf("model %s: alias %q is a model's name", m.Name, a)
			case seen[a] != "":
				return fmt.Errorf("model %s: alias %q is also %s's", m.Name, a, seen[a])
			}
			seen[a] = m.Name
			if isPrefix {
				c.prefixes = append(c.prefixes, prefixAlias{prefix, m})
			} else {
				c.byName[a] = m
			}
		}
	}
	sort.SliceStable(c.prefixes, func(i, j int) bool { return len(c.prefixes[i].prefix) > len(c.prefixes[j].prefix) })
	return nil
}

func (c *Catalog) byPrefix(name string) *Model {
	for _, p := range c.prefixes {
		if strings.HasPrefix(name, p.prefix) {
			return p.m
		}
	}
	return nil
}
