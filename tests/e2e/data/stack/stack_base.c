// A driver stack's base: exports a symbol and holds a vmalloc area while loaded (tests/e2e/test_stacks.py).
#include <linux/module.h>
#include <linux/vmalloc.h>

static void *area;

int stack_base_value(void)
{
	return 42;
}
EXPORT_SYMBOL_GPL(stack_base_value);

static int __init stack_base_init(void)
{
	area = vmalloc(3 * PAGE_SIZE);
	return area ? 0 : -ENOMEM;
}

static void __exit stack_base_exit(void)
{
	vfree(area);
}

module_init(stack_base_init);
module_exit(stack_base_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("kmodkit test: the base of a two-module stack");
