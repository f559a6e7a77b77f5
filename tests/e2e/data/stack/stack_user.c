// A driver stack's user: needs stack_base's symbol, so it loads only above it (modpost: depends=stack_base).
#include <linux/module.h>

int stack_base_value(void);

static int __init stack_user_init(void)
{
	pr_info("stack_user: the base says %d\n", stack_base_value());
	return stack_base_value() == 42 ? 0 : -EINVAL;
}

static void __exit stack_user_exit(void)
{
}

module_init(stack_user_init);
module_exit(stack_user_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("kmodkit test: the user of a two-module stack");
