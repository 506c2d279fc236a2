package caddymodule

import (
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// Helpers of the doc tests: the doc pages, their sections and their markdown tables.

// mdTable is one markdown table: its header cells and rows of cells.
type mdTable struct {
	line   int // 1-based line of the header
	header []string
	rows   [][]string
}

// splitRow splits a table row into trimmed cells (a backslash-escaped pipe stays in its cell).
func splitRow(l string) []string {
	l = strings.TrimSpace(l)
	l = strings.TrimPrefix(l, "|")
	if strings.HasSuffix(l, "|") && !strings.HasSuffix(l, `\|`) {
		l = l[:len(l)-1]
	}
	var cells []string
	var cur strings.Builder
	for i := 0; i < len(l); i++ {
		if l[i] == '\\' && i+1 < len(l) && l[i+1] == '|' {
			cur.WriteString(`\|`)
			i++
			continue
		}
		if l[i] == '|' {
			cells = append(cells, strings.TrimSpace(cur.String()))
			cur.Reset()
			continue
		}
		cur.WriteByte(l[i])
	}
	return append(cells, strings.TrimSpace(cur.String()))
}

// mdTables returns the tables of a markdown text (outside fenced code blocks).
func mdTables(text string) []mdTable {
	var out []mdTable
	lines := strings.Split(text, "\n")
	inFence := false
	for i := 0; i < len(lines); i++ {
		l := strings.TrimSpace(lines[i])
		if strings.HasPrefix(l, "```") {
			inFence = !inFence
			continue
		}
		if inFence || !strings.HasPrefix(l, "|") || i+1 >= len(lines) {
			continue
		}
		sep := strings.TrimSpace(lines[i+1])
		if !strings.HasPrefix(sep, "|") || strings.Trim(sep, "|-: ") != "" {
			continue
		}
		tb := mdTable{line: i + 1, header: splitRow(l)}
		j := i + 2
		for ; j < len(lines) && strings.HasPrefix(strings.TrimSpace(lines[j]), "|"); j++ {
			tb.rows = append(tb.rows, splitRow(lines[j]))
		}
		out = append(out, tb)
		i = j - 1
	}
	return out
}

// column returns the index of the header cell named name, or -1.
func (tb mdTable) column(name string) int {
	for i, h := range tb.header {
		if strings.EqualFold(strings.TrimSpace(h), name) {
			return i
		}
	}
	return -1
}

// docMarkdownFiles returns README.md, CONTRIBUTING.md and docs/**/*.md, relative to the repository.
func docMarkdownFiles(t *testing.T) []string {
	t.Helper()
	files := []string{"README.md", "CONTRIBUTING.md"}
	err := filepath.WalkDir("../docs", func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.HasSuffix(p, ".md") {
			files = append(files, strings.TrimPrefix(filepath.ToSlash(p), "../"))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(files)
	return files
}

func readRepoFile(t *testing.T, rel string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", rel))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// docSectionOf returns the text under the heading of a docs page that starts with title, up to
// the next heading of the same or a higher level (a "#" line in a fenced block is no heading).
func docSectionOf(t *testing.T, doc, file, title string) string {
	t.Helper()
	lines := strings.Split(doc, "\n")
	heading := func(l string) int {
		level := len(l) - len(strings.TrimLeft(l, "#"))
		if level == 0 || !strings.HasPrefix(l[level:], " ") {
			return 0
		}
		return level
	}
	inFence := false
	for i, l := range lines {
		if strings.HasPrefix(strings.TrimSpace(l), "```") {
			inFence = !inFence
		}
		level := heading(l)
		if inFence || level == 0 || !strings.HasPrefix(strings.TrimSpace(l[level:]), title) {
			continue
		}
		var out []string
		fence := false
		for _, m := range lines[i+1:] {
			if strings.HasPrefix(strings.TrimSpace(m), "```") {
				fence = !fence
			}
			if ml := heading(m); !fence && ml > 0 && ml <= level {
				break
			}
			out = append(out, m)
		}
		return strings.Join(out, "\n")
	}
	t.Fatalf("docs/%s has no section %q", file, title)
	return ""
}
