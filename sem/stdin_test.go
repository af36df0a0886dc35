package sem

import (
	"bufio"
	"os"
	"strconv"
	"strings"
)

var stdin = bufio.NewReader(os.Stdin)

func readLine() (string, error) {
	l, err := stdin.ReadString('\n')
	if err != nil && l == "" {
		return "", err
	}
	return strings.TrimRight(l, "\n"), nil
}

func formatInt(i int) string { return strconv.Itoa(i) }
