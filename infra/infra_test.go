package infra

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/fabrikam/dronedelivery/shared/config"
	"github.com/fabrikam/dronedelivery/shared/functionapp"
	"github.com/fabrikam/dronedelivery/shared/topology"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// No Bicep compiler can be installed where these tests run, so they read the
// templates as text. The Bicep is written to make that reliable: one setting
// per line in main.bicep's appSettings, role ids in named variables, loops over
// topology.json rather than literal names. Every check is a function of its
// inputs, so TestChecksCatchDrift can feed it a broken input and watch it fail.

// inputs is everything the checks compare.
type inputs struct {
	functions  []functionapp.FunctionConfig
	topology   topology.Topology
	bicep      map[string]string // path relative to infra/ → text
	parameters []byte            // main.parameters.json
	required   []string          // config.AppSettings
	hostJSON   []byte
	localJSON  []byte // local.settings.sample.json
	makefile   string
}

func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("..")
	require.NoError(t, err)
	return root
}

func loadInputs(t *testing.T) inputs {
	t.Helper()
	root := repoRoot(t)
	fns, err := functionapp.LoadFunctions(os.DirFS(root), "functions")
	require.NoError(t, err)
	raw, err := os.ReadFile(filepath.Join(root, "shared", "topology", "topology.json"))
	require.NoError(t, err)
	topo, err := topology.Parse(raw)
	require.NoError(t, err)
	in := inputs{functions: fns, topology: topo, bicep: map[string]string{}, required: config.AppSettings}
	files, err := filepath.Glob(filepath.Join(root, "infra", "modules", "*.bicep"))
	require.NoError(t, err)
	files = append(files, filepath.Join(root, "infra", "main.bicep"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		require.NoError(t, err)
		rel, _ := filepath.Rel(filepath.Join(root, "infra"), f)
		in.bicep[filepath.ToSlash(rel)] = string(b)
	}
	in.parameters, err = os.ReadFile(filepath.Join(root, "infra", "main.parameters.json"))
	require.NoError(t, err)
	in.hostJSON, err = os.ReadFile(filepath.Join(root, "host.json"))
	require.NoError(t, err)
	in.localJSON, err = os.ReadFile(filepath.Join(root, "local.settings.sample.json"))
	require.NoError(t, err)
	mk, err := os.ReadFile(filepath.Join(root, "Makefile"))
	require.NoError(t, err)
	in.makefile = string(mk)
	return in
}

// TestConsistency runs every check on the repository as it is.
func TestConsistency(t *testing.T) {
	in := loadInputs(t)
	settings, err := appSettings(in.bicep["main.bicep"])
	require.NoError(t, err)
	for name, problems := range map[string][]string{
		"QueuesMatchFunctions":        checkQueues(in.functions, in.topology),
		"GoTopologyMatchesJSON":       checkGoTopology(topology.Queues, topology.Containers, in.topology),
		"BicepBuildsTopologyFromJSON": checkBicepTopology(in.bicep, in.topology),
		"AppSettingsCoverConfig":      checkAppSettings(in.required, settings),
		"ConnectionsAreIdentityBased": checkConnections(in.functions, settings),
		"HostSettings":                checkHostSettings(settings),
		"RolesAssigned":               checkRoles(in.bicep),
		"NoSecrets":                   checkNoSecrets(in.bicep, in.parameters),
		"LocalAuthDisabled":           checkLocalAuthDisabled(in.bicep),
		"FlexConsumptionApp":          checkFlexApp(in.bicep),
		"ModulesWiredUp":              checkModules(in.bicep),
		"ParametersFileMatches":       checkParameters(in.bicep["main.bicep"], in.parameters),
		"Outputs":                     checkOutputs(in.bicep["main.bicep"], in.hostJSON),
		"LocalSettingsSample":         checkLocalSettings(in.localJSON, in.functions),
		"OperatorKeyInAppSettings":    checkOperatorKey(in.bicep, settings, in.parameters, in.makefile),
		"CosmosConsistency":           checkCosmosConsistency(in.bicep),
		"ServiceBusHostSettings":      checkServiceBusHost(in.hostJSON),
	} {
		t.Run(name, func(t *testing.T) {
			for _, p := range problems {
				t.Error(p)
			}
		})
	}
}

// TestChecksCatchDrift proves each check fails, naming the culprit, when one
// side changes without the other.
func TestChecksCatchDrift(t *testing.T) {
	in := loadInputs(t)
	mainBicep := in.bicep["main.bicep"]
	settings, err := appSettings(mainBicep)
	require.NoError(t, err)

	mustMention := func(t *testing.T, problems []string, names ...string) {
		t.Helper()
		all := strings.Join(problems, "\n")
		require.NotEmpty(t, problems, "the check passed; want it to fail naming %q", names)
		for _, n := range names {
			assert.Contains(t, all, n, "the problems name it")
		}
	}

	t.Run("QueueRenamedInFunctionJSONOnly", func(t *testing.T) {
		fns := cloneFunctions(in.functions)
		renameTriggerQueue(t, fns, topology.QueueDeliveryRequests, "delivery-requests-v2")
		mustMention(t, checkQueues(fns, in.topology), "delivery-requests-v2", `"`+topology.QueueDeliveryRequests+`"`)
	})
	t.Run("QueueRenamedInTopologyOnly", func(t *testing.T) {
		topo := cloneTopology(in.topology)
		topo.Queues[1].Name = "drone-assigned"
		mustMention(t, checkQueues(in.functions, topo), "drone-assigned", topology.QueueDroneScheduled)
	})
	t.Run("GoContainerKeyDiffersFromJSON", func(t *testing.T) {
		goContainers := slices.Clone(topology.Containers)
		goContainers[0].PartitionKey = "/ownerId"
		mustMention(t, checkGoTopology(topology.Queues, goContainers, in.topology), goContainers[0].Name, "/ownerId")
	})
	t.Run("QueueHardCodedInBicep", func(t *testing.T) {
		files := edited(in.bicep, "modules/servicebus.bicep", appending("\nresource extra 'Microsoft.ServiceBus/namespaces/queues@2024-01-01' = {\n  parent: namespace\n  name: 'package-updated'\n}\n"))
		mustMention(t, checkBicepTopology(files, in.topology), "package-updated")
	})
	t.Run("ContainersNotFromJSON", func(t *testing.T) {
		files := edited(in.bicep, "main.bicep", replacing(t, "containers: topology.containers", "containers: []"))
		mustMention(t, checkBicepTopology(files, in.topology), "topology.containers")
	})
	t.Run("UnindexedContainerRenamedInTopologyOnly", func(t *testing.T) {
		topo := cloneTopology(in.topology)
		i := slices.IndexFunc(topo.Containers, func(c topology.Container) bool { return c.Name == topology.ContainerConfirmations })
		require.GreaterOrEqual(t, i, 0)
		topo.Containers[i].Name = "proofs"
		mustMention(t, checkBicepTopology(in.bicep, topo), topology.ContainerConfirmations, "unindexedContainers")
	})
	t.Run("AppSettingRemovedFromBicep", func(t *testing.T) {
		s := settingsWithout(t, mainBicep, "COSMOS_DATABASE:")
		mustMention(t, checkAppSettings(in.required, s), config.CosmosDatabase)
	})
	t.Run("SettingAddedToConfigOnly", func(t *testing.T) {
		mustMention(t, checkAppSettings(append(slices.Clone(in.required), "DISPATCH_RADIUS_KM"), settings), "DISPATCH_RADIUS_KM")
	})
	t.Run("IdentitySettingRemovedFromBicep", func(t *testing.T) {
		s := settingsWithout(t, mainBicep, "ServiceBusConnection__clientId:")
		mustMention(t, checkConnections(in.functions, s), "ServiceBusConnection__clientId")
	})
	t.Run("ConnectionWithSecretCredential", func(t *testing.T) {
		s := cloneSettings(settings)
		s["ServiceBusConnection__credential"] = "'connectionstring'"
		mustMention(t, checkConnections(in.functions, s), "ServiceBusConnection__credential")
	})
	t.Run("NewConnectionPrefixInFunctionJSON", func(t *testing.T) {
		fns := cloneFunctions(in.functions)
		fns[0].Bindings = append(fns[0].Bindings, functionapp.Binding{Type: "serviceBus", Direction: "out", Name: "audit", QueueName: topology.QueuePackageUpdated, Connection: "AuditBus"})
		mustMention(t, checkConnections(fns, settings), "AuditBus__fullyQualifiedNamespace", "AuditBus__credential", "AuditBus__clientId")
	})
	t.Run("HostStorageSettingRemoved", func(t *testing.T) {
		s := settingsWithout(t, mainBicep, "AzureWebJobsStorage__credential:")
		mustMention(t, checkHostSettings(s), "AzureWebJobsStorage__credential")
	})
	t.Run("WorkerRuntimeSettingOnFlex", func(t *testing.T) {
		s := cloneSettings(settings)
		s["FUNCTIONS_WORKER_RUNTIME"] = "'custom'"
		mustMention(t, checkHostSettings(s), "FUNCTIONS_WORKER_RUNTIME")
	})
	// A role assignment removed (its role id replaced) is named.
	for _, c := range []struct{ name, file, roleID, replacement, role string }{
		{"RoleAssignmentRemoved", "modules/servicebus.bicep", "4f6d3b9b-027b-4f4c-9142-0e5a2a2247e0", "00000000-0000-0000-0000-0000000000ff", "Azure Service Bus Data Receiver"},
		{"CommunicationRoleRemoved", "modules/communication.bicep", "09976791-48a7-449e-bb21-39d1a415f350", "00000000-0000-0000-0000-0000000000ff", "Communication and Email Service Owner"},
		{"StorageQueueRoleRemoved", "modules/storage.bicep", "974c5e8b-45b9-4653-ba55-5f855dd0fb88", "00000000-0000-0000-0000-0000000000fe", "Storage Queue Data Contributor"},
		{"StorageTableRoleRemoved", "modules/storage.bicep", "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3", "00000000-0000-0000-0000-0000000000fd", "Storage Table Data Contributor"},
		{"ServiceBusDataOwnerRemoved", "modules/servicebus.bicep", "090c5cfd-751d-490a-894a-3ce6f1109419", "00000000-0000-0000-0000-0000000000fc", "Azure Service Bus Data Owner"},
	} {
		t.Run(c.name, func(t *testing.T) {
			files := edited(in.bicep, c.file, func(s string) string { return strings.ReplaceAll(s, c.roleID, c.replacement) })
			mustMention(t, checkRoles(files), c.role)
		})
	}
	t.Run("CommunicationSettingDropped", func(t *testing.T) {
		s := settingsWithout(t, mainBicep, "ACS_ENDPOINT:")
		mustMention(t, checkAppSettings(in.required, s), config.ACSEndpoint)
	})
	// A secret the Bicep reads or takes as a parameter is named.
	for _, c := range []struct {
		name, file, text string
		mentions         []string
	}{
		{"KeyReadInBicep", "modules/cosmos.bicep", "\noutput key string = account.listKeys().primaryMasterKey\n", []string{"modules/cosmos.bicep", "listKeys"}},
		{"AnotherSecureParameter", "modules/cosmos.bicep", "\n@secure()\nparam adminPassword string\n", []string{"modules/cosmos.bicep", "adminPassword"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			mustMention(t, checkNoSecrets(edited(in.bicep, c.file, appending(c.text)), in.parameters), c.mentions...)
		})
	}
	t.Run("LocalAuthLeftOn", func(t *testing.T) {
		files := edited(in.bicep, "modules/servicebus.bicep", replacing(t, "disableLocalAuth: true", "disableLocalAuth: false"))
		mustMention(t, checkLocalAuthDisabled(files), "modules/servicebus.bicep")
	})
	t.Run("WorkspaceKeysLeftOn", func(t *testing.T) {
		files := edited(in.bicep, "modules/monitoring.bicep", replacing(t, "disableLocalAuth: true", "disableLocalAuth: false"))
		mustMention(t, checkLocalAuthDisabled(files), "modules/monitoring.bicep")
	})
	t.Run("ModuleParamMisspelled", func(t *testing.T) {
		files := edited(in.bicep, "main.bicep", replacing(t, "queues: topology.queues", "queue: topology.queues"))
		mustMention(t, checkModules(files), "queue", "queues")
	})
	t.Run("ParameterFileNamesUnknownParam", func(t *testing.T) {
		b := withParameter(t, in.parameters, "cosmosServeless", true)
		mustMention(t, checkParameters(mainBicep, b), "cosmosServeless")
	})
	t.Run("SampleSettingsWithAKey", func(t *testing.T) {
		sample := strings.Replace(string(in.localJSON), `"UseDevelopmentStorage=true"`, `"DefaultEndpointsProtocol=https;AccountName=x;AccountKey=abc="`, 1)
		mustMention(t, checkLocalSettings([]byte(sample), in.functions), "AzureWebJobsStorage", "AccountKey")
	})
	t.Run("OperatorKeyLeftOutOfAppSettings", func(t *testing.T) {
		s := settingsWithout(t, mainBicep, "OPERATOR_KEY:")
		mustMention(t, checkOperatorKey(in.bicep, s, in.parameters, in.makefile), "OPERATOR_KEY")
	})
	t.Run("OperatorKeyNotSecure", func(t *testing.T) {
		files := edited(in.bicep, "main.bicep", droppingBefore(t, "param operatorKey string", "@secure()"))
		mustMention(t, checkOperatorKey(files, settings, in.parameters, in.makefile), "operatorKey", "@secure()")
	})
	t.Run("AppSettingsModuleParamNotSecure", func(t *testing.T) {
		files := edited(in.bicep, "modules/functionapp.bicep", droppingBefore(t, "param appSettings object", "@secure()"))
		mustMention(t, checkOperatorKey(files, settings, in.parameters, in.makefile), "appSettings", "modules/functionapp.bicep")
	})
	t.Run("ExtraSettingsWinOverTheTemplate", func(t *testing.T) {
		files := edited(in.bicep, "main.bicep", replacing(t, "appSettings: union(extraAppSettings, appSettings)", "appSettings: union(appSettings, extraAppSettings)"))
		mustMention(t, checkOperatorKey(files, settings, in.parameters, in.makefile), "union(extraAppSettings, appSettings)")
	})
	t.Run("OperatorKeySetAfterTheTemplate", func(t *testing.T) {
		mk := in.makefile + "\n\taz functionapp config appsettings set --name app --settings OPERATOR_KEY=$$OPERATOR_KEY\n"
		mustMention(t, checkOperatorKey(in.bicep, settings, in.parameters, mk), "appsettings set")
	})
	t.Run("OperatorKeyInParametersFile", func(t *testing.T) {
		b := withParameter(t, in.parameters, "operatorKey", "op-key-in-git-0123456789")
		mustMention(t, checkOperatorKey(in.bicep, settings, b, in.makefile), "main.parameters.json", "operatorKey")
	})
	t.Run("SessionConsistency", func(t *testing.T) {
		files := edited(in.bicep, "modules/cosmos.bicep", replacing(t, "defaultConsistencyLevel: 'Strong'", "defaultConsistencyLevel: 'Session'"))
		mustMention(t, checkCosmosConsistency(files), "Strong")
	})
	t.Run("PrefetchTurnedOn", func(t *testing.T) {
		mustMention(t, checkServiceBusHost([]byte(`{"functionTimeout":"00:05:00","extensions":{"serviceBus":{"prefetchCount":32,"maxAutoLockRenewalDuration":"00:05:00"}}}`)), "prefetchCount")
	})
	t.Run("LockRenewalShorterThanTheTimeout", func(t *testing.T) {
		mustMention(t, checkServiceBusHost([]byte(`{"functionTimeout":"00:10:00","extensions":{"serviceBus":{"prefetchCount":0,"maxAutoLockRenewalDuration":"00:05:00"}}}`)), "maxAutoLockRenewalDuration")
	})
	t.Run("RoutePrefixChanged", func(t *testing.T) {
		mustMention(t, checkOutputs(mainBicep, []byte(`{"extensions":{"http":{"routePrefix":"v2"}}}`)), "/v2")
		mustMention(t, checkOutputs(mainBicep, []byte(`{"extensions":{"http":{"routePrefix":"v2"}}}`)), "functionapp.RoutePrefix")
	})
}

// checkQueues: every queue a trigger or output binding names is declared in
// topology.json, and every declared queue has a function that consumes it.
func checkQueues(fns []functionapp.FunctionConfig, topo topology.Topology) []string {
	declared := map[string]bool{}
	for _, q := range topo.Queues {
		declared[q.Name] = true
	}
	consumed := map[string]bool{}
	var problems []string
	for _, fn := range fns {
		for _, b := range fn.Bindings {
			if b.QueueName == "" {
				continue
			}
			if strings.HasSuffix(b.Type, "Trigger") {
				consumed[b.QueueName] = true
			}
			if !declared[b.QueueName] {
				problems = append(problems, fmt.Sprintf("functions/%s/function.json binding %q names queue %q, which shared/topology/topology.json does not declare", fn.Name, b.Name, b.QueueName))
			}
		}
	}
	for _, q := range topo.Queues {
		if !consumed[q.Name] {
			problems = append(problems, fmt.Sprintf("topology.json declares queue %q but no function.json has a serviceBusTrigger on it", q.Name))
		}
	}
	return problems
}

// checkGoTopology: the Go package's Queues and Containers (names and partition
// keys) are exactly those of topology.json.
func checkGoTopology(goQueues []string, goContainers []topology.Container, topo topology.Topology) []string {
	var problems []string
	jsonQueues := map[string]bool{}
	for _, q := range topo.Queues {
		jsonQueues[q.Name] = true
		if !slices.Contains(goQueues, q.Name) {
			problems = append(problems, fmt.Sprintf("topology.json queue %q is missing from topology.Queues", q.Name))
		}
	}
	for _, q := range goQueues {
		if !jsonQueues[q] {
			problems = append(problems, fmt.Sprintf("topology.Queues has %q, which topology.json does not declare", q))
		}
	}
	jsonContainers := map[string]topology.Container{}
	for _, c := range topo.Containers {
		jsonContainers[c.Name] = c
	}
	for _, c := range goContainers {
		j, ok := jsonContainers[c.Name]
		switch {
		case !ok:
			problems = append(problems, fmt.Sprintf("topology.Containers has %q, which topology.json does not declare", c.Name))
		case j != c:
			problems = append(problems, fmt.Sprintf("container %q: Go has partition key %s (ttl %d), topology.json %s (ttl %d)", c.Name, c.PartitionKey, c.DefaultTTL, j.PartitionKey, j.DefaultTTL))
		}
		delete(jsonContainers, c.Name)
	}
	for name := range jsonContainers {
		problems = append(problems, fmt.Sprintf("topology.json container %q is missing from topology.Containers", name))
	}
	sort.Strings(problems)
	return problems
}

var (
	loadJSON      = regexp.MustCompile(`loadJsonContent\('([^']+)'\)`)
	unindexedDecl = regexp.MustCompile(`(?m)^var unindexedContainers = \[(.*)\]$`)
	quotedName    = regexp.MustCompile(`'([^']*)'`)
)

// checkBicepTopology: main.bicep loads topology.json and hands its lists to
// the modules, the modules build every queue and container from those lists
// with the settings the file declares, and no Bicep spells a name of its own.
func checkBicepTopology(files map[string]string, topo topology.Topology) []string {
	var problems []string
	main := files["main.bicep"]
	loads := loadJSON.FindAllStringSubmatch(main, -1)
	if len(loads) != 1 {
		problems = append(problems, fmt.Sprintf("main.bicep has %d loadJsonContent calls; want one loading the topology", len(loads)))
	} else if got := path.Clean(path.Join("infra", loads[0][1])); got != "shared/topology/topology.json" {
		problems = append(problems, fmt.Sprintf("main.bicep loads %s (resolved from infra/ to %s), not shared/topology/topology.json", loads[0][1], got))
	}
	want := map[string][]string{
		"main.bicep": {
			`queues: topology.queues`,
			`containers: topology.containers`,
		},
		"modules/servicebus.bicep": {
			`for q in queues: {`,
			`name: q.name`,
			`maxDeliveryCount: q.maxDeliveryCount`,
			`lockDuration: q.lockDuration`,
			`requiresDuplicateDetection: true`,
			`duplicateDetectionHistoryTimeWindow: q.duplicateDetectionHistoryTimeWindow`,
			`deadLetteringOnMessageExpiration: true`,
		},
		"modules/cosmos.bicep": {
			`for c in containers: {`,
			`name: c.name`,
			`id: c.name`,
			`paths: [c.partitionKey]`,
			`defaultTtl: c.?defaultTtl`,
			`indexingPolicy: contains(unindexedContainers, c.name) ? noIndex : null`,
			`indexingMode: 'none'`,
			`automatic: false`,
		},
	}
	for _, file := range slices.Sorted(maps.Keys(want)) {
		for _, line := range want[file] {
			if !hasLine(files[file], line) {
				problems = append(problems, fmt.Sprintf("%s has no line %q: the topology must come from topology.json", file, line))
			}
		}
	}
	var names []string
	for _, q := range topo.Queues {
		names = append(names, q.Name)
	}
	containers := map[string]bool{}
	for _, c := range topo.Containers {
		names = append(names, c.Name)
		containers[c.Name] = true
	}
	// main.bicep's unindexedContainers is the one place a container is
	// named in Bicep: a fact about how the code reads it, not topology.
	// Each name must still be a container of topology.json, or a rename
	// would leave it indexed without a word.
	unindexed := unindexedDecl.FindStringSubmatch(main)
	if unindexed == nil {
		problems = append(problems, "main.bicep has no line `var unindexedContainers = [...]` (one line, names quoted)")
	} else {
		for _, m := range quotedName.FindAllStringSubmatch(unindexed[1], -1) {
			if !containers[m[1]] {
				problems = append(problems, fmt.Sprintf("main.bicep's unindexedContainers names %q, which topology.json does not declare", m[1]))
			}
		}
		if !hasLine(main, "unindexedContainers: unindexedContainers") {
			problems = append(problems, "main.bicep does not pass unindexedContainers: unindexedContainers to the cosmos module")
		}
	}
	for _, file := range slices.Sorted(maps.Keys(files)) {
		text := files[file]
		if file == "main.bicep" && unindexed != nil {
			text = strings.Replace(text, unindexed[0], "", 1)
		}
		for _, n := range names {
			if strings.Contains(text, "'"+n+"'") {
				problems = append(problems, fmt.Sprintf("%s spells '%s' itself; take it from topology.json so there is one source", file, n))
			}
		}
	}
	return problems
}

// checkAppSettings: every setting the code reads in Azure is set.
func checkAppSettings(required []string, settings map[string]string) []string {
	var problems []string
	for _, s := range required {
		if _, ok := settings[s]; !ok {
			problems = append(problems, fmt.Sprintf("config.AppSettings reads %s but main.bicep's appSettings does not set it", s))
		}
	}
	return problems
}

// endpointSetting is the identity-based endpoint setting each binding type
// reads under its connection prefix.
var endpointSetting = map[string]string{
	"serviceBusTrigger": "fullyQualifiedNamespace",
	"serviceBus":        "fullyQualifiedNamespace",
	"cosmosDBTrigger":   "accountEndpoint",
	"cosmosDB":          "accountEndpoint",
}

// checkConnections: every binding's connection prefix has its endpoint,
// credential=managedidentity and the identity's client id, and no secret form.
func checkConnections(fns []functionapp.FunctionConfig, settings map[string]string) []string {
	need := map[string]string{} // prefix → endpoint key
	var problems []string
	for _, fn := range fns {
		for _, b := range fn.Bindings {
			if b.Connection == "" {
				continue
			}
			key, ok := endpointSetting[b.Type]
			if !ok {
				problems = append(problems, fmt.Sprintf("functions/%s binding %q (%s) uses connection %s; teach infra_test.go its identity-based endpoint setting", fn.Name, b.Name, b.Type, b.Connection))
				continue
			}
			need[b.Connection] = key
		}
	}
	for _, prefix := range slices.Sorted(maps.Keys(need)) {
		problems = append(problems, identityConnection(settings, prefix, need[prefix])...)
	}
	return problems
}

func identityConnection(settings map[string]string, prefix, endpointKey string) []string {
	var problems []string
	if _, ok := settings[prefix]; ok {
		problems = append(problems, fmt.Sprintf("%s is set: that is the connection-string form; use %s__%s", prefix, prefix, endpointKey))
	}
	for _, key := range []string{prefix + "__" + endpointKey, prefix + "__credential", prefix + "__clientId"} {
		if _, ok := settings[key]; !ok {
			problems = append(problems, fmt.Sprintf("main.bicep's appSettings lacks %s, which the %s connection needs", key, prefix))
		}
	}
	if v, ok := settings[prefix+"__credential"]; ok && v != "'managedidentity'" {
		problems = append(problems, fmt.Sprintf("%s__credential is %s; want 'managedidentity'", prefix, v))
	}
	if v, ok := settings[prefix+"__clientId"]; ok && v != "identity.outputs.clientId" {
		problems = append(problems, fmt.Sprintf("%s__clientId is %s; want identity.outputs.clientId, the app's identity", prefix, v))
	}
	return problems
}

// checkHostSettings: the host's own storage and Application Insights use the
// identity, and no setting that Flex Consumption rejects or that carries a
// secret is present.
func checkHostSettings(settings map[string]string) []string {
	problems := identityConnection(settings, "AzureWebJobsStorage", "accountName")
	if v := settings["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"]; v != "'ClientId=${identity.outputs.clientId};Authorization=AAD'" {
		problems = append(problems, fmt.Sprintf("APPLICATIONINSIGHTS_AUTHENTICATION_STRING is %q; want 'ClientId=${identity.outputs.clientId};Authorization=AAD'", v))
	}
	if _, ok := settings["APPLICATIONINSIGHTS_CONNECTION_STRING"]; !ok {
		problems = append(problems, "APPLICATIONINSIGHTS_CONNECTION_STRING is not set: the host would send no telemetry")
	}
	for _, bad := range []string{
		"FUNCTIONS_WORKER_RUNTIME", "FUNCTIONS_EXTENSION_VERSION", "WEBSITE_RUN_FROM_PACKAGE", // Flex takes these from functionAppConfig and rejects them
		"WEBSITE_CONTENTAZUREFILECONNECTIONSTRING", "WEBSITE_CONTENTSHARE", "APPINSIGHTS_INSTRUMENTATIONKEY", // key-based or not for Flex
	} {
		if _, ok := settings[bad]; ok {
			problems = append(problems, fmt.Sprintf("%s is set; Flex Consumption with identity-based connections must not set it", bad))
		}
	}
	return problems
}

// requiredRoles are the built-in roles the app's identity needs, by their
// well-known role definition ids.
var requiredRoles = []struct{ name, id, assignment string }{
	{"Azure Service Bus Data Sender", "69a216fc-b8fb-44d8-bc22-1f3c2cd27a39", "Microsoft.Authorization/roleAssignments@"},
	{"Azure Service Bus Data Receiver", "4f6d3b9b-027b-4f4c-9142-0e5a2a2247e0", "Microsoft.Authorization/roleAssignments@"},
	{"Azure Service Bus Data Owner", "090c5cfd-751d-490a-894a-3ce6f1109419", "Microsoft.Authorization/roleAssignments@"},
	{"Storage Blob Data Owner", "b7e6dc6d-f1e8-4753-8033-0f276bb0955b", "Microsoft.Authorization/roleAssignments@"},
	{"Storage Queue Data Contributor", "974c5e8b-45b9-4653-ba55-5f855dd0fb88", "Microsoft.Authorization/roleAssignments@"},
	{"Storage Table Data Contributor", "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3", "Microsoft.Authorization/roleAssignments@"},
	{"Monitoring Metrics Publisher", "3913510d-42f4-4e42-8a64-420c390055eb", "Microsoft.Authorization/roleAssignments@"},
	{"Cosmos DB Built-in Data Contributor", "00000000-0000-0000-0000-000000000002", "Microsoft.DocumentDB/databaseAccounts/sqlRoleAssignments@"},
	{"Communication and Email Service Owner", "09976791-48a7-449e-bb21-39d1a415f350", "Microsoft.Authorization/roleAssignments@"},
	{"Web PubSub Service Owner", "12cf5a90-567b-43ae-8102-96cf46c7d9b4", "Microsoft.Authorization/roleAssignments@"},
}

// checkRoles: each required role id is declared in a variable whose line names
// the role, and that variable is the roleDefinitionId of an assignment of the
// right kind in the same file.
func checkRoles(files map[string]string) []string {
	var problems []string
	for _, role := range requiredRoles {
		decl := regexp.MustCompile(`(?m)^var (\w+) = '` + role.id + `' // ` + regexp.QuoteMeta(role.name) + `$`)
		found := false
		for _, file := range slices.Sorted(maps.Keys(files)) {
			text := files[file]
			m := decl.FindStringSubmatch(text)
			if m == nil {
				continue
			}
			use := regexp.MustCompile(`(?m)^\s*roleDefinitionId: .*\b` + m[1] + `\b`)
			if use.MatchString(text) && strings.Contains(text, "'"+role.assignment) {
				found = true
			}
		}
		if !found {
			problems = append(problems, fmt.Sprintf("no Bicep assigns %s (%s) with %s", role.name, role.id, strings.TrimSuffix(role.assignment, "@")))
		}
	}
	return problems
}

// secretPatterns are ways a key or secret could enter a template.
var secretPatterns = regexp.MustCompile(`(?i)list\w*keys\(|listConnectionStrings|listAccountSas|listServiceSas|accountkey|sharedaccesskey|primarykey|secondarykey|masterkey|@secure\(|password|connectionstring`)

// secureParams are the only secure parameters the templates may declare:
// the operator key, the settings of the operator's own (an OTLP header may
// carry a key), and the app settings object that carries both into the
// function app module.
var secureParams = map[string][]string{
	"main.bicep":                {"operatorKey", "extraAppSettings"},
	"modules/functionapp.bicep": {"appSettings"},
}

// checkNoSecrets: no template reads a key, handles a connection string or
// asks for a secure parameter other than those of secureParams;
// the only connection string is Application Insights', an address rather
// than a credential once local auth is off.
func checkNoSecrets(files map[string]string, parameters []byte) []string {
	allowed := []string{
		"output connectionString string = appInsights.properties.ConnectionString",
		"APPLICATIONINSIGHTS_CONNECTION_STRING: monitoring.outputs.connectionString",
	}
	var problems []string
	all := maps.Clone(files)
	all["main.parameters.json"] = string(parameters)
	for _, file := range slices.Sorted(maps.Keys(all)) {
		lines := strings.Split(all[file], "\n")
		for i, line := range lines {
			trimmed := strings.TrimSpace(line)
			if strings.HasPrefix(trimmed, "//") || slices.Contains(allowed, trimmed) {
				continue
			}
			if trimmed == "@secure()" {
				if name := nextParam(lines[i+1:]); !slices.Contains(secureParams[file], name) || name == "" {
					problems = append(problems, fmt.Sprintf("%s:%d: secure parameter %q: the operator key and the extra app settings are the deployment's only secrets", file, i+1, name))
				}
				continue
			}
			if m := secretPatterns.FindString(line); m != "" {
				problems = append(problems, fmt.Sprintf("%s:%d: %q looks like a key or secret: %s", file, i+1, m, trimmed))
			}
		}
	}
	return problems
}

// checkLocalAuthDisabled: every service the identity reaches refuses keys,
// and so does the Log Analytics workspace behind Application Insights.
func checkLocalAuthDisabled(files map[string]string) []string {
	var problems []string
	for file, lines := range map[string][]string{
		"modules/servicebus.bicep":    {"disableLocalAuth: true"},
		"modules/cosmos.bicep":        {"disableLocalAuth: true"},
		"modules/storage.bicep":       {"allowSharedKeyAccess: false"},
		"modules/monitoring.bicep":    {"DisableLocalAuth: true", "disableLocalAuth: true"},
		"modules/communication.bicep": {"disableLocalAuth: true"},
		"modules/webpubsub.bicep":     {"disableLocalAuth: true"},
	} {
		for _, line := range lines {
			if !hasLine(files[file], line) {
				problems = append(problems, fmt.Sprintf("%s has no line %q: keys would still work", file, line))
			}
		}
	}
	sort.Strings(problems)
	return problems
}

// checkFlexApp: the plan and site are Flex Consumption, Linux, the custom
// handler runtime, deploying from blob storage with the user-assigned identity.
func checkFlexApp(files map[string]string) []string {
	var problems []string
	text := files["modules/functionapp.bicep"]
	for _, line := range []string{
		"name: 'FC1'",
		"tier: 'FlexConsumption'",
		"reserved: true // Linux",
		"kind: 'functionapp,linux'",
		"type: 'UserAssigned'",
		"type: 'blobContainer'",
		"type: 'UserAssignedIdentity'",
		"userAssignedIdentityResourceId: identityId",
		"name: 'custom'",
		"version: '1.0'",
		"name: 'appsettings'",
		"properties: appSettings",
	} {
		if !hasLine(text, line) {
			problems = append(problems, fmt.Sprintf("modules/functionapp.bicep has no line %q", line))
		}
	}
	return problems
}

var (
	moduleBlock = regexp.MustCompile(`(?ms)^module (\w+) '([^']+)' = \{\n(.*?)^\}`)
	paramsBlock = regexp.MustCompile(`(?ms)^  params: \{\n(.*?)^  \}`)
	paramKey    = regexp.MustCompile(`(?m)^    (\w+):`)
	paramDecl   = regexp.MustCompile(`(?m)^param (\w+) [\w\[\]]+( = .*)?$`)
	outputDecl  = regexp.MustCompile(`(?m)^output (\w+) `)
	outputUse   = regexp.MustCompile(`\b(\w+)\.outputs\.(\w+)\b`)
)

// checkModules stands in for the compiler's module checks: main.bicep passes
// only parameters a module declares, passes every one without a default, and
// reads only outputs the module has.
func checkModules(files map[string]string) []string {
	main := files["main.bicep"]
	var problems []string
	outputsOf := map[string]map[string]bool{}
	for _, m := range moduleBlock.FindAllStringSubmatch(main, -1) {
		symbol, file, body := m[1], m[2], m[3]
		text, ok := files[file]
		if !ok {
			problems = append(problems, fmt.Sprintf("module %s: %s does not exist", symbol, file))
			continue
		}
		declared := map[string]bool{}
		var mandatory []string
		for _, d := range paramDecl.FindAllStringSubmatch(text, -1) {
			declared[d[1]] = true
			if d[2] == "" {
				mandatory = append(mandatory, d[1])
			}
		}
		passed := map[string]bool{}
		if p := paramsBlock.FindStringSubmatch(body); p != nil {
			for _, k := range paramKey.FindAllStringSubmatch(p[1], -1) {
				passed[k[1]] = true
				if !declared[k[1]] {
					problems = append(problems, fmt.Sprintf("module %s passes %s, which %s does not declare (it has %v)", symbol, k[1], file, slices.Sorted(maps.Keys(declared))))
				}
			}
		}
		for _, p := range mandatory {
			if !passed[p] {
				problems = append(problems, fmt.Sprintf("module %s does not pass %s, which %s requires", symbol, p, file))
			}
		}
		outputsOf[symbol] = map[string]bool{}
		for _, o := range outputDecl.FindAllStringSubmatch(text, -1) {
			outputsOf[symbol][o[1]] = true
		}
	}
	if len(outputsOf) == 0 {
		problems = append(problems, "main.bicep declares no modules the test can read")
	}
	for _, u := range outputUse.FindAllStringSubmatch(main, -1) {
		outs, ok := outputsOf[u[1]]
		if !ok {
			problems = append(problems, fmt.Sprintf("main.bicep reads %s.outputs.%s but declares no module %s", u[1], u[2], u[1]))
		} else if !outs[u[2]] {
			problems = append(problems, fmt.Sprintf("main.bicep reads %s.outputs.%s, which that module does not output", u[1], u[2]))
		}
	}
	return problems
}

// checkParameters: main.parameters.json names only parameters main.bicep
// declares, since a misspelt one fails the deployment.
func checkParameters(main string, parameters []byte) []string {
	var f struct {
		Parameters map[string]json.RawMessage `json:"parameters"`
	}
	if err := json.Unmarshal(parameters, &f); err != nil {
		return []string{fmt.Sprintf("main.parameters.json: %v", err)}
	}
	declared := map[string]bool{}
	for _, d := range paramDecl.FindAllStringSubmatch(main, -1) {
		declared[d[1]] = true
	}
	var problems []string
	for _, p := range slices.Sorted(maps.Keys(f.Parameters)) {
		if !declared[p] {
			problems = append(problems, fmt.Sprintf("main.parameters.json sets %s, which main.bicep does not declare", p))
		}
	}
	return problems
}

// checkOutputs: the outputs make deploy and the docs rely on exist, and the
// API base URL ends in host.json's routePrefix.
func checkOutputs(main string, hostJSON []byte) []string {
	var host struct {
		Extensions struct {
			HTTP struct {
				RoutePrefix *string `json:"routePrefix"`
			} `json:"http"`
		} `json:"extensions"`
	}
	if err := json.Unmarshal(hostJSON, &host); err != nil {
		return []string{fmt.Sprintf("host.json: %v", err)}
	}
	prefix := "api" // the host's default
	if p := host.Extensions.HTTP.RoutePrefix; p != nil {
		prefix = *p
	}
	var problems []string
	if prefix != functionapp.RoutePrefix {
		// The host forwards requests under its routePrefix
		// (WebScriptHostHttpRoutesManager, Azure/azure-functions-host), and
		// the handler takes for forwarded requests those under its own.
		problems = append(problems, fmt.Sprintf("host.json routePrefix is %q, but the handler serves forwarded requests under /%s (functionapp.RoutePrefix): every route would answer 404", prefix, functionapp.RoutePrefix))
	}
	want := "output apiBaseUrl string = 'https://${functionApp.outputs.defaultHostName}/" + prefix + "'"
	if prefix == "" {
		want = "output apiBaseUrl string = 'https://${functionApp.outputs.defaultHostName}'"
	}
	if !hasLine(main, want) {
		problems = append(problems, fmt.Sprintf("main.bicep has no line %q (host.json routePrefix is %q, so the API is under /%s)", want, prefix, prefix))
	}
	if !hasLine(main, "output functionAppName string = functionApp.outputs.name") {
		problems = append(problems, "main.bicep does not output functionAppName, which make deploy reads")
	}
	return problems
}

// checkLocalSettings: the sample for local.settings.json is valid, points the
// host's storage at Azurite, names every binding's endpoint by its
// identity-based setting and carries no key.
func checkLocalSettings(sample []byte, fns []functionapp.FunctionConfig) []string {
	var f struct {
		IsEncrypted bool              `json:"IsEncrypted"`
		Values      map[string]string `json:"Values"`
	}
	if err := json.Unmarshal(sample, &f); err != nil {
		return []string{fmt.Sprintf("local.settings.sample.json: %v", err)}
	}
	var problems []string
	if f.IsEncrypted {
		problems = append(problems, "local.settings.sample.json: IsEncrypted must be false for a readable sample")
	}
	if v := f.Values["FUNCTIONS_WORKER_RUNTIME"]; v != "custom" {
		problems = append(problems, fmt.Sprintf("local.settings.sample.json: FUNCTIONS_WORKER_RUNTIME is %q; Core Tools needs custom", v))
	}
	if v := f.Values["AzureWebJobsStorage"]; v != "UseDevelopmentStorage=true" {
		problems = append(problems, fmt.Sprintf("local.settings.sample.json: AzureWebJobsStorage is %q; want UseDevelopmentStorage=true (Azurite)", v))
	}
	for _, fn := range fns {
		for _, b := range fn.Bindings {
			if key, ok := endpointSetting[b.Type]; ok && f.Values[b.Connection+"__"+key] == "" {
				problems = append(problems, fmt.Sprintf("local.settings.sample.json lacks %s__%s, which functions/%s needs", b.Connection, key, fn.Name))
			}
		}
	}
	if f.Values[config.CosmosPrefix+"__accountEndpoint"] == "" {
		problems = append(problems, fmt.Sprintf("local.settings.sample.json lacks %s__accountEndpoint, which shared/config reads", config.CosmosPrefix))
	}
	for _, k := range slices.Sorted(maps.Keys(f.Values)) {
		if m := secretPatterns.FindString(f.Values[k]); m != "" {
			problems = append(problems, fmt.Sprintf("local.settings.sample.json: %s holds %q; the sample must carry no key", k, m))
		}
	}
	return problems
}

// nextParam returns the name of the first param declared in lines,
// skipping decorators and comments, or "" when something else comes first.
func nextParam(lines []string) string {
	for _, l := range lines {
		t := strings.TrimSpace(l)
		if t == "" || strings.HasPrefix(t, "@") || strings.HasPrefix(t, "//") {
			continue
		}
		if m := paramDecl.FindStringSubmatch(t); m != nil {
			return m[1]
		}
		return ""
	}
	return ""
}

// decorated reports whether the declaration line decl in text is preceded
// by the decorator dec among the decorators and comments right above it.
func decorated(text, decl, dec string) bool {
	lines := strings.Split(text, "\n")
	for i, l := range lines {
		if strings.TrimSpace(l) != decl {
			continue
		}
		for j := i - 1; j >= 0; j-- {
			t := strings.TrimSpace(lines[j])
			if t == dec {
				return true
			}
			if !strings.HasPrefix(t, "@") && !strings.HasPrefix(t, "//") {
				break
			}
		}
	}
	return false
}

// checkOperatorKey: the operator key reaches the app with the rest of the
// settings, from a secure parameter, in every deployment: the settings
// resource replaces the whole set, so a key set by a later command is lost at
// the next redeploy, and a key in the parameters file would sit in git.
func checkOperatorKey(files map[string]string, settings map[string]string, parameters []byte, makefile string) []string {
	var problems []string
	if v := settings[config.OperatorKey]; v != "operatorKey" {
		problems = append(problems, fmt.Sprintf("main.bicep's appSettings sets %s to %q; want the secure parameter operatorKey", config.OperatorKey, v))
	}
	if !decorated(files["main.bicep"], "param operatorKey string", "@secure()") {
		problems = append(problems, "main.bicep does not declare param operatorKey string with @secure(): the key would be kept in the deployment's history")
	}
	if !decorated(files["modules/functionapp.bicep"], "param appSettings object", "@secure()") {
		problems = append(problems, "modules/functionapp.bicep does not declare param appSettings object with @secure(): the settings carry the operator key")
	}
	// union keeps the last object's value of a key, so the template's own
	// settings, the operator key among them, win over extraAppSettings.
	if !hasLine(files["main.bicep"], "appSettings: union(extraAppSettings, appSettings)") {
		problems = append(problems, "main.bicep does not pass appSettings: union(extraAppSettings, appSettings) to the function app module: the template's settings, the operator key among them, must reach the app and win over extraAppSettings")
	}
	var f struct {
		Parameters map[string]json.RawMessage `json:"parameters"`
	}
	if err := json.Unmarshal(parameters, &f); err == nil {
		if _, ok := f.Parameters["operatorKey"]; ok {
			problems = append(problems, "main.parameters.json sets operatorKey: the key must not be committed; make deploy passes it from OPERATOR_KEY")
		}
	}
	if strings.Contains(makefile, "appsettings set") {
		problems = append(problems, "the Makefile runs az functionapp config appsettings set: a setting set after the template is wiped by the next deployment of it")
	}
	if !strings.Contains(makefile, "operatorKey") {
		problems = append(problems, "the Makefile does not pass the operatorKey parameter to the deployment")
	}
	return problems
}

// checkCosmosConsistency: reads of another instance's writes need a
// consistency that guarantees them (see modules/cosmos.bicep).
func checkCosmosConsistency(files map[string]string) []string {
	if !hasLine(files["modules/cosmos.bicep"], "defaultConsistencyLevel: 'Strong'") {
		return []string{"modules/cosmos.bicep does not set defaultConsistencyLevel: 'Strong': a step may not see the delivery another instance just wrote"}
	}
	return nil
}

// checkServiceBusHost: no prefetch, whose buffered messages hold locks that
// nobody renews, and lock renewal that lasts as long as an invocation may.
func checkServiceBusHost(hostJSON []byte) []string {
	var h struct {
		FunctionTimeout string `json:"functionTimeout"`
		Extensions      struct {
			ServiceBus struct {
				PrefetchCount              *int   `json:"prefetchCount"`
				MaxAutoLockRenewalDuration string `json:"maxAutoLockRenewalDuration"`
			} `json:"serviceBus"`
		} `json:"extensions"`
	}
	if err := json.Unmarshal(hostJSON, &h); err != nil {
		return []string{fmt.Sprintf("host.json: %v", err)}
	}
	var problems []string
	if p := h.Extensions.ServiceBus.PrefetchCount; p != nil && *p != 0 {
		problems = append(problems, fmt.Sprintf("host.json sets serviceBus.prefetchCount %d: a prefetched message's lock runs while it waits in the buffer, unrenewed", *p))
	}
	timeout, err1 := timeSpan(h.FunctionTimeout)
	renewal, err2 := timeSpan(h.Extensions.ServiceBus.MaxAutoLockRenewalDuration)
	switch {
	case err1 != nil || err2 != nil:
		problems = append(problems, fmt.Sprintf("host.json: functionTimeout %q and serviceBus.maxAutoLockRenewalDuration %q must both be set as hh:mm:ss", h.FunctionTimeout, h.Extensions.ServiceBus.MaxAutoLockRenewalDuration))
	case renewal < timeout:
		problems = append(problems, fmt.Sprintf("host.json: serviceBus.maxAutoLockRenewalDuration %s is shorter than functionTimeout %s: a long invocation would lose its message's lock", renewal, timeout))
	}
	return problems
}

// timeSpan parses a .NET TimeSpan as host.json writes it, hh:mm:ss.
func timeSpan(s string) (time.Duration, error) {
	var h, m, sec int
	if _, err := fmt.Sscanf(s, "%d:%d:%d", &h, &m, &sec); err != nil {
		return 0, err
	}
	return time.Duration(h)*time.Hour + time.Duration(m)*time.Minute + time.Duration(sec)*time.Second, nil
}

// dropLineBefore removes the line equal (once trimmed) to what among the
// decorators right above the line decl.
func dropLineBefore(t *testing.T, text, decl, what string) string {
	t.Helper()
	lines := strings.Split(text, "\n")
	for i, l := range lines {
		if strings.TrimSpace(l) != decl {
			continue
		}
		for j := i - 1; j >= 0 && strings.HasPrefix(strings.TrimSpace(lines[j]), "@"); j-- {
			if strings.TrimSpace(lines[j]) == what {
				return strings.Join(slices.Delete(lines, j, j+1), "\n")
			}
		}
	}
	t.Fatalf("no %q above %q", what, decl)
	return ""
}

var settingLine = regexp.MustCompile(`^\s*([A-Za-z_][A-Za-z0-9_]*)\s*:\s*(.+?)\s*$`)

// appSettings reads main.bicep's `var appSettings = { ... }` block: one
// setting per line, key to the Bicep expression of its value.
func appSettings(main string) (map[string]string, error) {
	lines := strings.Split(main, "\n")
	start := slices.Index(lines, "var appSettings = {")
	if start < 0 {
		return nil, fmt.Errorf("main.bicep has no line %q", "var appSettings = {")
	}
	out := map[string]string{}
	for _, line := range lines[start+1:] {
		if line == "}" {
			return out, nil
		}
		trimmed := strings.TrimSpace(line)
		if trimmed == "" || strings.HasPrefix(trimmed, "//") {
			continue
		}
		m := settingLine.FindStringSubmatch(line)
		if m == nil {
			return nil, fmt.Errorf("main.bicep appSettings: cannot read %q; keep one `Name: value` per line", trimmed)
		}
		if _, dup := out[m[1]]; dup {
			return nil, fmt.Errorf("main.bicep appSettings sets %s twice", m[1])
		}
		out[m[1]] = m[2]
	}
	return nil, fmt.Errorf("main.bicep appSettings block never closes with a line %q", "}")
}

// hasLine reports whether text has a line equal to want once trimmed.
func hasLine(text, want string) bool {
	for _, line := range strings.Split(text, "\n") {
		if strings.TrimSpace(line) == want {
			return true
		}
	}
	return false
}

// withParameter returns the parameters file with name set to value.
func withParameter(t *testing.T, parameters []byte, name string, value any) []byte {
	t.Helper()
	var p map[string]any
	require.NoError(t, json.Unmarshal(parameters, &p))
	p["parameters"].(map[string]any)[name] = map[string]any{"value": value}
	b, err := json.Marshal(p)
	require.NoError(t, err)
	return b
}

// edited returns a copy of the Bicep files with file changed by edit.
func edited(files map[string]string, file string, edit func(string) string) map[string]string {
	out := maps.Clone(files)
	out[file] = edit(out[file])
	return out
}

// appending, replacing (replaceLine) and droppingBefore (dropLineBefore)
// are the edits the tests make to a Bicep file.
func appending(text string) func(string) string {
	return func(s string) string { return s + text }
}

func replacing(t *testing.T, from, to string) func(string) string {
	return func(s string) string { return replaceLine(t, s, from, to) }
}

func droppingBefore(t *testing.T, decl, what string) func(string) string {
	return func(s string) string { return dropLineBefore(t, s, decl, what) }
}

// settingsWithout is the app settings of main.bicep once the line that
// starts with prefix is dropped.
func settingsWithout(t *testing.T, mainBicep, prefix string) map[string]string {
	t.Helper()
	s, err := appSettings(dropLine(t, mainBicep, prefix))
	require.NoError(t, err)
	return s
}

func cloneSettings(m map[string]string) map[string]string { return maps.Clone(m) }

func cloneFunctions(fns []functionapp.FunctionConfig) []functionapp.FunctionConfig {
	out := make([]functionapp.FunctionConfig, len(fns))
	for i, fn := range fns {
		out[i] = fn
		out[i].Bindings = slices.Clone(fn.Bindings)
	}
	return out
}

func cloneTopology(t topology.Topology) topology.Topology {
	return topology.Topology{Queues: slices.Clone(t.Queues), Containers: slices.Clone(t.Containers)}
}

func renameTriggerQueue(t *testing.T, fns []functionapp.FunctionConfig, from, to string) {
	t.Helper()
	for i := range fns {
		for j := range fns[i].Bindings {
			if fns[i].Bindings[j].QueueName == from {
				fns[i].Bindings[j].QueueName = to
				return
			}
		}
	}
	t.Fatalf("no binding names queue %s", from)
}

// dropLine removes the one line that starts (after indentation) with prefix.
func dropLine(t *testing.T, text, prefix string) string {
	t.Helper()
	lines := strings.Split(text, "\n")
	for i, l := range lines {
		if strings.HasPrefix(strings.TrimSpace(l), prefix) {
			return strings.Join(slices.Delete(lines, i, i+1), "\n")
		}
	}
	t.Fatalf("no line starts with %q", prefix)
	return ""
}

// replaceLine swaps the one line equal (once trimmed) to from for to.
func replaceLine(t *testing.T, text, from, to string) string {
	t.Helper()
	lines := strings.Split(text, "\n")
	for i, l := range lines {
		if strings.TrimSpace(l) == from {
			lines[i] = strings.Replace(l, from, to, 1)
			return strings.Join(lines, "\n")
		}
	}
	t.Fatalf("no line %q", from)
	return ""
}
