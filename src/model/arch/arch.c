/* arch.c - the one table of architecture families: {arch, bind, forward}.
 * Adding a family is one row here plus its file under model/arch/. */
#include "model/model_int.h"

static const model_arch_ops arch_table[] = {
    {MODEL_ARCH_LLAMA, model_llama_bind, model_llama_forward},
    {MODEL_ARCH_QWEN2, model_llama_bind, model_llama_forward}, /* Llama + q/k/v biases */
    {MODEL_ARCH_DEEPSEEK2, model_deepseek2_bind, model_deepseek2_forward}, /* MLA + MoE */
    {MODEL_ARCH_GEMMA3, model_gemma3_bind, model_gemma3_forward},          /* hybrid sliding window */
};

const model_arch_ops *model_arch_ops_find(model_arch arch)
{
    for (size_t i = 0; i < sizeof arch_table / sizeof arch_table[0]; i++)
        if (arch_table[i].arch == arch) return &arch_table[i];
    SEM_ASSERT(!"architecture parsed by spec.c but missing from arch_table");
    return NULL;
}
