// The server-side apply body of an AppTask's Deployment: what ssa_controller.apptask.desired.render
// produces with its default configuration (identity, the controller ownerReference with
// blockOwnerDeletion, the managed-by label, the selector, the Pod Security Standard "restricted"
// settings, and only the fields the AppTask specifies). Structs with omitempty rather than appsv1.Deployment,
// whose zero values (creationTimestamp: null, strategy: {}, resources: {}, ...) an apply would
// claim; client-go 1.20 has no apply configurations.
package main

import (
	"encoding/json"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

const (
	managedByLabel = "app.kubernetes.io/managed-by"
	managedByValue = "ssa-controller"
	nameLabel      = "apptasks.example.com/name"
	containerName  = "app"
	kindAppTask    = "AppTask"
)

type applyDeployment struct {
	APIVersion string    `json:"apiVersion"`
	Kind       string    `json:"kind"`
	Metadata   applyMeta `json:"metadata"`
	Spec       applySpec `json:"spec"`
}

type applyMeta struct {
	Name            string                  `json:"name"`
	Namespace       string                  `json:"namespace"`
	Labels          map[string]string       `json:"labels"`
	OwnerReferences []metav1.OwnerReference `json:"ownerReferences"`
}

type applySpec struct {
	Replicas *int32               `json:"replicas,omitempty"`
	Selector metav1.LabelSelector `json:"selector"`
	Template applyTemplate        `json:"template"`
}

type applyTemplate struct {
	Metadata applyTemplateMeta `json:"metadata"`
	Spec     applyPodSpec      `json:"spec"`
}

type applyTemplateMeta struct {
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

type applyPodSpec struct {
	Containers                   []applyContainer `json:"containers"`
	AutomountServiceAccountToken bool             `json:"automountServiceAccountToken"`
	SecurityContext              podSecurity      `json:"securityContext"`
}

// The "restricted" settings of the pod and of its container (podTemplate.restricted).
type podSecurity struct {
	RunAsNonRoot   bool           `json:"runAsNonRoot"`
	SeccompProfile seccompProfile `json:"seccompProfile"`
}

type seccompProfile struct {
	Type string `json:"type"`
}

type containerSecurity struct {
	AllowPrivilegeEscalation bool         `json:"allowPrivilegeEscalation"`
	Capabilities             capabilities `json:"capabilities"`
}

type capabilities struct {
	Drop []string `json:"drop"`
}

type applyContainer struct {
	Name      string     `json:"name"`
	Image     string     `json:"image"`
	Command   []string   `json:"command,omitempty"`
	Args      []string   `json:"args,omitempty"`
	Env       []EnvVar   `json:"env,omitempty"`
	Ports     []Port     `json:"ports,omitempty"`
	Resources *Resources `json:"resources,omitempty"`
	// restricted: no privilege escalation, no capabilities
	SecurityContext containerSecurity `json:"securityContext"`
}

// render is the apply body of the Deployment for at.
func render(at *AppTask) ([]byte, error) {
	selector := map[string]string{nameLabel: at.Name}
	labels := make(map[string]string, len(at.Spec.Labels)+1)
	for k, v := range at.Spec.Labels {
		labels[k] = v
	}
	labels[nameLabel] = at.Name
	controller := true
	body := applyDeployment{
		APIVersion: "apps/v1",
		Kind:       "Deployment",
		Metadata: applyMeta{
			Name:      at.Name,
			Namespace: at.Namespace,
			Labels:    map[string]string{managedByLabel: managedByValue},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: groupVersion.String(),
				Kind: kindAppTask, Name: at.Name, UID: at.UID, Controller: &controller,
				BlockOwnerDeletion: &controller}},
		},
		Spec: applySpec{
			Replicas: at.Spec.Replicas,
			Selector: metav1.LabelSelector{MatchLabels: selector},
			Template: applyTemplate{
				Metadata: applyTemplateMeta{Labels: labels, Annotations: at.Spec.Annotations},
				Spec: applyPodSpec{Containers: []applyContainer{container(&at.Spec)},
					SecurityContext: podSecurity{RunAsNonRoot: true,
						SeccompProfile: seccompProfile{Type: "RuntimeDefault"}}},
			},
		},
	}
	return json.Marshal(body)
}

func container(spec *AppTaskSpec) applyContainer {
	c := applyContainer{Name: containerName, Image: spec.Image, Command: spec.Command,
		Args: spec.Args, Env: spec.Env, SecurityContext: containerSecurity{
			Capabilities: capabilities{Drop: []string{"ALL"}}}}
	for _, p := range spec.Ports {
		if p.Protocol == "" {
			p.Protocol = "TCP" // part of the list key the API server merges ports by
		}
		c.Ports = append(c.Ports, p)
	}
	if len(spec.Resources.Requests) > 0 || len(spec.Resources.Limits) > 0 {
		c.Resources = &spec.Resources
	}
	return c
}
