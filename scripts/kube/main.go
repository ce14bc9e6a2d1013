// Command kube is one multi-call binary for Agora's single-node test cluster (scripts/kube.sh):
// etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kube-proxy and
// kubectl, each the upstream component's own command constructor. The component is the first
// argument (`kube kubelet --config ...`) or the name the binary is called by (a symlink).
//
// One binary, not seven: the components share most of their packages, so one link is a
// fraction of seven in time and disk, and the build cache serves them all.
package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/spf13/cobra"
	"go.etcd.io/etcd/server/v3/etcdmain"
	"k8s.io/component-base/cli"
	"k8s.io/component-base/logs"
	_ "k8s.io/component-base/logs/json/register"
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/version"
	kubectl "k8s.io/kubectl/pkg/cmd"
	kubectlutil "k8s.io/kubectl/pkg/cmd/util"
	apiserver "k8s.io/kubernetes/cmd/kube-apiserver/app"
	controllermanager "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	proxy "k8s.io/kubernetes/cmd/kube-proxy/app"
	scheduler "k8s.io/kubernetes/cmd/kube-scheduler/app"
	kubelet "k8s.io/kubernetes/cmd/kubelet/app"
	_ "time/tzdata"
)

// commands maps a component name to the cobra command its upstream main() runs.
var commands = map[string]func() *cobra.Command{
	"kube-apiserver":          apiserver.NewAPIServerCommand,
	"kube-controller-manager": controllermanager.NewControllerManagerCommand,
	"kube-scheduler":          func() *cobra.Command { return scheduler.NewSchedulerCommand() },
	"kubelet":                 func() *cobra.Command { return kubelet.NewKubeletCommand(context.Background()) },
	"kube-proxy":              proxy.NewProxyCommand,
}

func usage() {
	names := []string{"etcd", "kubectl"}
	for name := range commands {
		names = append(names, name)
	}
	sort.Strings(names)
	fmt.Fprintf(os.Stderr, "usage: kube COMPONENT [ARGS...]\ncomponents: %v\n", names)
	os.Exit(2)
}

func main() {
	name := filepath.Base(os.Args[0])
	args := os.Args
	if name == "kube" {
		if len(os.Args) < 2 {
			usage()
		}
		name, args = os.Args[1], os.Args[1:]
	}
	// Each upstream command parses os.Args itself (cobra, etcd's flag set).
	os.Args = args
	switch name {
	case "etcd":
		etcdmain.Main(args)
	case "kubectl":
		logs.GlogSetter(kubectl.GetLogVerbosity(args)) // nolint:errcheck
		if err := cli.RunNoErrOutput(kubectl.NewDefaultKubectlCommand()); err != nil {
			kubectlutil.CheckErr(err)
		}
	default:
		newCommand, ok := commands[name]
		if !ok {
			usage()
		}
		os.Exit(cli.Run(newCommand()))
	}
}
